"""The encoder of the plain U-Net (Ronneberger et al., 2015): the paper's "base" backbone.

Five levels of two 3x3 convolutions, each followed by BatchNorm and ReLU, with 2x2 max-pooling
between levels; filters ``base_filters * (1, 2, 4, 8, 16)`` (64 ... 1024 as in the original).
The last level (stride 16) is the bottleneck; the other four are the skips (strides 8, 4, 2, 1).
Differences from the 2015 paper, as in nnU-Net: "same" padding (output size = input size) and a
normalisation layer after every convolution (BatchNorm here, so that training from scratch at
the paper's learning rate 1e-3 is stable); the decoder is the zoo's generic decoder
(:mod:`iac_tf.unets.decoder`, nearest-neighbour upsampling instead of 2x2 up-convolutions),
mirroring the encoder's filters.

Layer names: ``encoder_block{k}_conv{j}`` / ``_bn{j}`` / ``_relu{j}``, ``encoder_block{k}_pool``.
"""

from __future__ import annotations

from iac_tf._keras import keras
from iac_tf.unets.decoder import conv3x3_bn_relu

DEPTH = 5  # levels, the last one is the bottleneck


def plain_unet_encoder(
    input_shape, weights=None, base_filters: int = 64, use_batchnorm=True
):
    """Build the plain U-Net encoder as a functional model (output: the stride-16 bottleneck).

    Args:
        input_shape: ``(H, W, C)``.
        weights: must be ``None`` (there are no pretrained weights for the plain U-Net).
        base_filters: filters of the first level; level ``k`` has ``base_filters * 2**k``.
        use_batchnorm: BatchNorm after each convolution (default ``True``).
    """
    if weights is not None:
        raise ValueError(
            "backbone 'base' has no pretrained encoder weights; use encoder_weights=None"
        )
    if int(base_filters) < 1:
        raise ValueError(
            f"base_filters must be a positive integer, got {base_filters!r}"
        )
    inputs = keras.layers.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for k in range(DEPTH):
        if k > 0:
            x = keras.layers.MaxPooling2D(2, name=f"encoder_block{k - 1}_pool")(x)
        filters = int(base_filters) * 2**k
        for j in (1, 2):
            x = conv3x3_bn_relu(x, filters, f"encoder_block{k}", use_batchnorm, suffix=str(j))
    return keras.Model(inputs, x, name="plain_unet_encoder")


plain_unet_encoder.description = "plain U-Net encoder (Ronneberger et al.)"
plain_unet_encoder.kwargs = ("base_filters", "use_batchnorm")

__all__ = ["plain_unet_encoder"]
