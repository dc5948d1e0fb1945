"""Load a trained U-Net (or an IAC U-Net) from a file, with errors that name the file."""

from __future__ import annotations

import os
import pathlib

from iac_tf._keras import keras
from iac_tf.unets.layers import register_application_layers


def register_all_layers() -> None:
    """Register every custom Keras layer of iac_tf (zoo layers, search and discrete cells, the
    residual implant, the comparison modules): the one place loaders call before ``load_model``,
    so no loader can miss a module (an unregistered layer fails with ``'str' object is not
    callable``)."""
    register_application_layers()
    import iac_tf.comparisons  # noqa: F401
    import iac_tf.genotype  # noqa: F401  (DiscreteCell)
    import iac_tf.implant.residual  # noqa: F401
    import iac_tf.search  # noqa: F401  (SearchCell and its ops)


def load_unet(path: str | os.PathLike) -> keras.Model:
    """Load a model saved as ``.keras``, ``.h5`` or a SavedModel folder (tf_keras), uncompiled.

    Every custom layer of the package is registered first (:func:`register_all_layers`), so a
    U-Net, an IAC U-Net (either implant mode), a supernet or a comparison U-Net all load.
    """
    register_all_layers()
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
