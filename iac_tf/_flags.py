"""The environment flags that must be set before TensorFlow is imported (no TensorFlow import
here, so ``import iac_tf`` and ``iac --help`` stay fast)."""

from __future__ import annotations

import os
import sys

_FLAGS = {"TF_USE_LEGACY_KERAS": "1", "SM_FRAMEWORK": "tf.keras"}

KERAS3_MESSAGE = (
    "iac_tf needs the Keras 2 API (tf_keras), but TensorFlow was already imported with Keras 3 "
    "behind tf.keras. Set the environment variable TF_USE_LEGACY_KERAS=1 before anything imports "
    "TensorFlow (e.g. `export TF_USE_LEGACY_KERAS=1`, or `os.environ['TF_USE_LEGACY_KERAS'] = '1'` "
    "as the first line of your script/notebook), or import iac_tf before tensorflow. Restart the "
    "Python process after changing it."
)


def set_keras_flags() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1`` and ``SM_FRAMEWORK=tf.keras`` unless TensorFlow is already
    imported; refuse conflicting values."""
    tf_already_imported = "tensorflow" in sys.modules
    for key, value in _FLAGS.items():
        current = os.environ.get(key)
        if current is not None and current != value:
            raise ImportError(
                f"iac_tf: environment variable {key}={current!r} conflicts with the required "
                f"{key}={value!r}. Unset it or set it to {value!r}."
            )
        if current is None and not tf_already_imported:
            os.environ[key] = value
        elif current is None and key == "SM_FRAMEWORK":
            os.environ[key] = value


