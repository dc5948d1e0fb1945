"""Keras interop: after ``import iac_tf`` alone, ``tf.keras.models.load_model`` loads every kind of
model the tool saves (in a fresh process, whichever of TensorFlow and iac_tf is imported first),
and IAC / comparison U-Nets, loaded and trained further with ``fit``, save as ``.h5``.

Covers: iac_tf/_serializable.py, iac_tf/layer_scope.py
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from iac_tf import _serializable
from iac_tf._keras import keras, tf
from iac_tf.comparisons import build_comparison_unet
from iac_tf.config.stages import Stage3Config
from iac_tf.files import save_model
from iac_tf.layer_scope import ScopedLayer
from iac_tf.models import load_unet
from iac_tf.training.fit import compile_for_training
from iac_tf.training.stage3 import build_iac_unet
from tests.training.test_stage3 import GENOTYPE
from tests.tiny import tiny_unet

SIZE = 16
KINDS = ("unet", "replace", "residual", "attention", "residual_attention", "nested")


def build(kind: str) -> keras.Model:
    unet = tiny_unet(size=SIZE, levels=2, f=4)
    if kind == "unet":
        return unet
    if kind in ("replace", "residual"):
        return build_iac_unet(unet, GENOTYPE, 4, kind,
                              residual_projection="conv" if kind == "residual" else "auto")
    return build_comparison_unet(unet, kind)


def batch(n: int = 2):
    x = np.random.default_rng(0).random((n, SIZE, SIZE, 1), np.float32)
    return x, (x > 0.5).astype(np.float32)


def randomise(model) -> None:
    """Non-trivial trainable weights (a zero-initialised residual projection hides mistakes)."""
    for w in model.trainable_weights:
        w.assign(tf.random.stateless_normal(w.shape, (1, len(w.name))) * 0.1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each kind saved as the tool saves it (compiled with the Dice loss and metric, the U-Net
    with the SGD optimiser, the others with Adam), its outputs on ``x``, and one .h5."""
    folder = tmp_path_factory.mktemp("models")
    x, _ = batch()
    expected = {}
    for kind in KINDS:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = build(kind)
        randomise(model)
        compile_for_training(model, Stage3Config(optimizer="sgd" if kind == "unet" else "adam"))
        save_model(model, folder / f"{kind}.keras")
        expected[f"{kind}.keras"] = model(x, training=False).numpy()
        if kind == "replace":  # Keras' legacy formats (.h5; a SavedModel revives its layers
            # through the same registry but costs ~20 s to write)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file")
                model.save(folder / "replace.h5", include_optimizer=False)
            expected["replace.h5"] = expected["replace.keras"]
    np.save(folder / "x.npy", x)
    np.savez(folder / "expected.npz", **expected)
    return folder, expected


LOADER = """
import json, sys, numpy as np
{imports}
folder, names = sys.argv[1], sys.argv[2:]
x = np.load(folder + "/x.npy")
expected = np.load(folder + "/expected.npz")
out = {{}}
for name in names:
    model = {load}(folder + "/" + name)
    out[name] = [float(np.abs(model(x, training=False).numpy() - expected[name]).max()),
                 type(model.loss).__name__ if getattr(model, "loss", None) is not None else None]
print("RESULT " + json.dumps(out))
"""


def load_in_fresh_process(folder, names, imports: str,
                          load: str = "tf.keras.models.load_model", **env) -> dict:
    code = LOADER.format(imports=imports, load=load)
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    proc = subprocess.run([sys.executable, "-c", code, str(folder), *names], capture_output=True,
                          text=True, env=full_env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[-1][len("RESULT "):])


def check_all_loaded(result: dict, names) -> None:
    assert sorted(result) == sorted(names)
    for name, (diff, loss) in result.items():
        assert diff == 0.0, name
        if name.endswith(".keras"):
            assert loss == "DiceLoss", name  # compiled on load: the package's loss class


def test_plain_load_model_after_import_iac_tf(saved):
    """Every kind, and an IAC U-Net in the legacy .h5 format."""
    folder, expected = saved
    result = load_in_fresh_process(folder, list(expected), "import iac_tf\nimport tensorflow as tf")
    check_all_loaded(result, list(expected))


# the other import orders on one model holding two of the package's layers
def test_plain_load_model_when_tensorflow_was_imported_first(saved):
    folder, _ = saved
    result = load_in_fresh_process(folder, ["residual.keras"],
                                   "import tensorflow as tf\nimport iac_tf", TF_USE_LEGACY_KERAS="1")
    check_all_loaded(result, ["residual.keras"])


def test_plain_load_model_through_the_package_entry_point(saved):
    """tf_keras first imported by ``iac_tf._keras`` itself (inside the package's own import)."""
    folder, _ = saved
    result = load_in_fresh_process(folder, ["residual.keras"],
                                   "import iac_tf.losses\nfrom iac_tf._keras import keras",
                                   "keras.models.load_model")
    check_all_loaded(result, ["residual.keras"])


def test_import_iac_tf_still_imports_no_tensorflow():
    code = ("import sys, iac_tf; print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_table_names_every_registered_class():
    """:data:`iac_tf._serializable.CLASSES` is exactly what the package registers with Keras."""
    for module in set(_serializable.CLASSES.values()):
        __import__(module)
    registry = keras.utils.get_custom_objects()
    real = {name for name, obj in registry.items() if name.startswith("iac_tf>")
            and not (isinstance(obj, type) and issubclass(obj, _serializable._Placeholder))}
    assert real == set(_serializable.CLASSES)
    for name, module in _serializable.CLASSES.items():
        if name != "iac_tf>LayerScale":  # keras.applications' own class, registered by iac_tf.unets
            assert registry[name].__module__.startswith(module.rsplit(".", 1)[0]), name


# ---------------------------------------------------------------------------- .h5 and weight names
H5_KINDS = ("replace", "residual", "attention", "residual_attention", "nested")


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("kind", H5_KINDS)
def test_loaded_model_saves_as_h5_with_its_optimiser(kind, saved, tmp_path):
    """Loaded, compiled for further training (the optimiser's slots exist, as after ``fit``),
    saved as .h5 and loaded again."""
    folder, _ = saved
    x, _ = batch()
    model = load_unet(folder / f"{kind}.keras")
    names = [w.name for w in model.weights]
    assert [n for n, c in collections.Counter(names).items() if c > 1] == []
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.optimizer.build(model.trainable_variables)
    slots = [v.name for v in model.optimizer.variables()]
    assert len(set(slots)) == len(slots)
    want = model(x, training=False).numpy()
    model.save(tmp_path / "m.h5")  # with the optimiser's slots
    again = load_unet(tmp_path / "m.h5")
    np.testing.assert_array_equal(again(x, training=False).numpy(), want)


@pytest.mark.parametrize("kind", ("replace", "attention"))
def test_loaded_weight_names_are_the_built_ones(kind, saved):
    """A model loaded from .keras names its weights like the model that was saved (the frozen
    U-Net convolution a cell absorbed is saved with the cell, so it loads under the cell's name)."""
    folder, _ = saved
    keras.backend.clear_session()
    fresh = {w.name for w in build(kind).weights}
    loaded = [w.name for w in load_unet(folder / f"{kind}.keras").weights]
    assert len(set(loaded)) == len(loaded) == len(fresh)
    for name in set(loaded) - fresh:
        cell, _, rest = name.partition("/")
        assert cell.startswith("iac_cell_level") and rest in fresh, name


def test_files_of_the_former_weight_names_still_load(saved, tmp_path, monkeypatch):
    """Weights named as before (layers loaded outside their name scope) restore from a
    checkpoint and a .keras file into models of today's names: neither format keys on names."""
    folder, _ = saved
    x, _ = batch()
    with monkeypatch.context() as patch:  # the former naming
        patch.setattr(ScopedLayer, "build_from_config", keras.layers.Layer.build_from_config)
        old = load_unet(folder / "replace.keras")
        assert old.trainable_weights[0].name.startswith("preprocess0/")
        old.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
        old.optimizer.build(old.trainable_variables)
        for w in old.trainable_weights + old.optimizer.variables():  # as after some training
            w.assign_add(tf.fill(w.shape, tf.cast(0.01, w.dtype)))
        tf.train.Checkpoint(model=old, optimizer=old.optimizer).write(str(tmp_path / "ckpt"))
        old.save(tmp_path / "old.keras")
        want = old(x, training=False).numpy()
    new = load_unet(tmp_path / "old.keras")
    assert new.trainable_weights[0].name.startswith("iac_cell_level")
    np.testing.assert_array_equal(new(x, training=False).numpy(), want)
    restored = load_unet(folder / "replace.keras")  # other weights until restored
    assert not np.array_equal(restored(x, training=False).numpy(), want)
    restored.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    restored.optimizer.build(restored.trainable_variables)
    status = tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).read(
        str(tmp_path / "ckpt"))
    status.assert_existing_objects_matched()
    np.testing.assert_array_equal(restored(x, training=False).numpy(), want)
