"""Load a trained U-Net (or an IAC U-Net) from a file, with errors that name the file."""

from __future__ import annotations

import os
import pathlib

from iac_tf._keras import keras
from iac_tf.unets.layers import register_application_layers


def load_unet(path: str | os.PathLike) -> keras.Model:
    """Load a model saved as ``.keras``, ``.h5`` or a SavedModel folder (tf_keras), uncompiled.

    The zoo's custom layers are registered here; IAC U-Nets also need the cells registered
    (``import iac_tf.search``).
    """
    register_application_layers()
    import iac_tf.implant.residual  # noqa: F401  (registers ResidualImplant: residual IAC U-Nets)
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: U-Net file not found")
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: could not load a Keras model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path}: loaded object is {type(model).__name__}, not a Keras model")
    return model
