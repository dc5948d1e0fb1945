"""The Stage I U-Net zoo (paper Section III-A, IV-B.1).

``build_unet(backbone, input_shape, classes, encoder_weights)`` builds a U-Net for any of the
eight :data:`BACKBONES` from one backbone table (:mod:`iac_tf.unets.registry`) and one decoder
(:mod:`iac_tf.unets.decoder`). Every skip connection is a ``Concatenate`` named
``decoder_stage{i}_concat`` (``i = 0`` deepest) of ``[upsampled decoder tensor, encoder tensor]``.

Importing this package registers the custom layers the encoders need for
``keras.models.load_model`` (ConvNeXt's ``LayerScale``, see :mod:`iac_tf.unets.layers`).
"""

from iac_tf.unets.builder import build_unet, skip_layer_names
from iac_tf.unets.layers import register_application_layers
from iac_tf.unets.registry import BACKBONES, TABLE, Backbone, get_backbone

register_application_layers()

__all__ = [
    "BACKBONES",
    "TABLE",
    "Backbone",
    "build_unet",
    "get_backbone",
    "register_application_layers",
    "skip_layer_names",
]
