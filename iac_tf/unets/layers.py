"""Serialisable custom layers of the zoo.

ConvNeXt's ``LayerScale`` (``x * gamma``) lives inside ``keras.applications``' ConvNeXt module
and is not registered, so a saved ConvNeXt U-Net cannot be loaded with a plain
``keras.models.load_model``. :func:`register_application_layers` registers it under the package
``"iac_tf"`` (as ``"iac_tf>LayerScale"``); :mod:`iac_tf.unets` calls it at import, so::

    import iac_tf.unets  # noqa: F401  (registers the layers)
    model = keras.models.load_model("unet_convnext_tiny.keras", compile=False)

The registration writes to Keras' own custom-object registry (the mechanism every
``@register_keras_serializable`` layer uses); it is idempotent and prints nothing.
"""

from __future__ import annotations

import sys

from iac_tf._keras import keras

PACKAGE = "iac_tf"


def _convnext_module():
    """The module that defines ``keras.applications.ConvNeXtTiny`` (found without importing
    ``tf_keras`` by name: the function records its defining module)."""
    return sys.modules[keras.applications.ConvNeXtTiny.__module__]


def convnext_layer_scale_class() -> type:
    """The (unregistered) ``LayerScale`` class that ``keras.applications`` ConvNeXt uses."""
    return _convnext_module().LayerScale


def register_application_layers() -> dict[str, type]:
    """Register the custom layers of the ``keras.applications`` encoders; idempotent.

    Returns:
        ``{registered_name: class}`` of the layers that are now registered.
    """
    registered = {}
    for cls in (convnext_layer_scale_class(),):
        name = f"{PACKAGE}>{cls.__name__}"
        if keras.utils.get_registered_object(name) is not cls:
            keras.utils.register_keras_serializable(package=PACKAGE)(cls)
        registered[name] = cls
    return registered


__all__ = ["PACKAGE", "convnext_layer_scale_class", "register_application_layers"]
