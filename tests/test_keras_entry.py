"""The one Keras entry point: flags set before TensorFlow, Keras 3 refused with instructions.

Covers: iac_tf/__init__.py, iac_tf/_keras.py
"""

import os
import subprocess
import sys


def _run(code: str, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "SM_FRAMEWORK")}
    full_env.update(env, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=300, check=False)


def test_importing_iac_tf_first_gives_tf_keras():
    proc = _run("import iac_tf, os; from iac_tf._keras import tf, keras;"
                "print(os.environ['TF_USE_LEGACY_KERAS'], os.environ['SM_FRAMEWORK'],"
                " tf.keras.layers.Layer.__module__.split('.')[0], keras.__version__)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "tf.keras", "tf_keras", "2.21.0"]


def test_tensorflow_imported_first_with_keras3_fails_with_instructions():
    proc = _run("import tensorflow as tf; tf.keras.layers; import iac_tf")
    assert proc.returncode != 0
    assert "TF_USE_LEGACY_KERAS=1" in proc.stderr and "Restart the Python process" in proc.stderr


def test_tensorflow_imported_first_with_the_flag_is_fine():
    proc = _run("import tensorflow as tf; import iac_tf; print('ok')", TF_USE_LEGACY_KERAS="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_conflicting_flag_is_refused():
    proc = _run("import iac_tf", TF_USE_LEGACY_KERAS="0")
    assert proc.returncode != 0 and "TF_USE_LEGACY_KERAS='0'" in proc.stderr
