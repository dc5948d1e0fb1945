"""The zoo's one decoder: segmentation_models' U-Net decoder, with a float32 sigmoid head.

Stage ``i`` (``i = 0`` deepest) is, with segmentation_models' layer names::

    up = UpSampling2D(2)(x)                          decoder_stage{i}_upsampling
    x  = Concatenate(axis=-1)([up, skip_i])          decoder_stage{i}_concat   (if stage i has a skip)
    x  = Conv3x3-BN-ReLU(filters_i)(x)  x 2          decoder_stage{i}a_conv/_bn/_relu, ...b_...

so every skip connection is exactly one ``Concatenate`` of (upsampled decoder tensor, encoder
tensor) at equal resolution, the structure :func:`iac_tf.implant.find_skip_connections` finds.
Stages beyond the last skip have no concatenation (segmentation_models' stage 4). The head is
``Conv3x3(classes)`` (``final_conv``) and a sigmoid (``sigmoid``), both float32 so that the
output stays float32 under a ``mixed_float16`` policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from iac_tf._keras import keras

CONCAT_NAME = "decoder_stage{}_concat"


def conv3x3_bn_relu(x, filters: int, name: str, use_batchnorm: bool = True, suffix: str = ""):
    """segmentation_models' ``Conv3x3BnReLU``: layers ``{name}_conv{suffix}``, ``{name}_bn{suffix}``,
    ``{name}_relu{suffix}`` (the base U-Net's blocks use the suffix to number their two convs)."""
    x = keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=not use_batchnorm,
        kernel_initializer="he_uniform",
        name=f"{name}_conv{suffix}",
    )(x)
    if use_batchnorm:
        x = keras.layers.BatchNormalization(axis=-1, name=f"{name}_bn{suffix}")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu{suffix}")(x)


def decoder_stage(x, skip, filters: int, stage: int, use_batchnorm: bool = True):
    """One upsampling stage; ``skip`` may be ``None``."""
    x = keras.layers.UpSampling2D(size=2, name=f"decoder_stage{stage}_upsampling")(x)
    if skip is not None:
        x = keras.layers.Concatenate(axis=-1, name=CONCAT_NAME.format(stage))([x, skip])
    x = conv3x3_bn_relu(x, filters, f"decoder_stage{stage}a", use_batchnorm)
    return conv3x3_bn_relu(x, filters, f"decoder_stage{stage}b", use_batchnorm)


def segmentation_head(x, classes: int, activation: str = "sigmoid"):
    """``final_conv`` (3x3, ``classes`` filters) and ``activation`` (``sigmoid``, or
    ``softmax`` over the channels), both computed in float32; the activation layer is named
    after it."""
    x = keras.layers.Conv2D(
        classes,
        3,
        padding="same",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        dtype="float32",
        name="final_conv",
    )(x)
    return keras.layers.Activation(activation, dtype="float32", name=activation)(x)


def center_block(x, filters: int, use_batchnorm: bool = True):
    """segmentation_models' two extra convolutions after a max-pooling encoder output (VGG)."""
    x = conv3x3_bn_relu(x, filters, "center_block1", use_batchnorm)
    return conv3x3_bn_relu(x, filters, "center_block2", use_batchnorm)


def build_decoder(
    bottleneck,
    skips: Sequence,
    filters: Sequence[int],
    classes: int,
    use_batchnorm: bool = True,
    activation: str = "sigmoid",
):
    """Decode ``bottleneck`` with ``skips`` (deepest first) into a ``(B, H, W, classes)`` map
    (the head's ``activation``: ``sigmoid`` or ``softmax``).

    Stage ``i`` uses ``filters[i]`` and ``skips[i]`` if ``i < len(skips)``.
    """
    if len(filters) < len(skips):
        raise ValueError(
            f"decoder_filters has {len(filters)} entries but the encoder has {len(skips)} skips"
        )
    x = bottleneck
    for stage, stage_filters in enumerate(filters):
        skip = skips[stage] if stage < len(skips) else None
        x = decoder_stage(x, skip, int(stage_filters), stage, use_batchnorm)
    return segmentation_head(x, classes, activation)


__all__ = [
    "CONCAT_NAME",
    "build_decoder",
    "center_block",
    "conv3x3_bn_relu",
    "decoder_stage",
    "segmentation_head",
]
