"""Shared test setup: Keras-2 flags before TensorFlow, CPU-only determinism, GPU marker."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import iac_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import pytest  # noqa: E402

from iac_tf._keras import tf  # noqa: E402


def _has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip_gpu = pytest.mark.skip(reason="needs a GPU; none visible to TensorFlow")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Each test starts with fresh Keras name counters (deterministic layer names)."""
    from iac_tf._keras import keras

    keras.backend.clear_session()
    yield


@pytest.fixture
def unwritable(tmp_path):
    """A folder nothing can be written into (immutable as root, read-only otherwise)."""
    import subprocess
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not done:
            pytest.skip("chattr +i not available: cannot make a folder unwritable as root")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)

