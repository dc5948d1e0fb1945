"""The Keras precision policy of a stage (``mixed_precision: true`` -> ``mixed_float16``)."""

from __future__ import annotations

import contextlib

from iac_tf._keras import keras


@contextlib.contextmanager
def precision_policy(mixed_precision: bool):
    """Set the global Keras policy (``mixed_float16`` or ``float32``) for model building, and
    restore the previous one afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
