"""Skip-feature locators: where in an encoder the U-Net taps its skip connections.

A locator is a small callable ``locator(encoder) -> tensor`` (``encoder`` a functional
``keras.Model``). The backbone table (:mod:`iac_tf.unets.registry`) lists one per skip
connection, deepest first. Three kinds cover the zoo:

* :func:`at_stride` finds a feature map **structurally**: the last layer (in topological
  order) whose output is a 4D map of spatial size ``(H / stride, W / stride)``. For the MBConv /
  inverted-residual encoders this is the expanded activation just before the next strided
  convolution, the same taps segmentation_models chose by hand for EfficientNet; for ConvNeXt
  and the plain U-Net it is the last block of a stage. Keras-applications layer names
  (MobileNetV3, ConvNeXt) are auto-generated and change between builds, so they are never used.
* :func:`named` taps layers by name, only where the names are deterministic and published
  (segmentation_models' own feature-layer table for VGG16 / ResNet50).
* :func:`conv_stem` creates a feature map the encoder does not have: ConvNeXt starts with a
  4x4/stride-4 patchify stem, so there is no stride-2 map; a small trainable stem
  (two Conv3x3-BN-ReLU, the first with stride 2) on the input provides the top skip.
"""

from __future__ import annotations

from collections.abc import Callable

from iac_tf._keras import keras

Locator = Callable[[keras.Model], "keras.KerasTensor"]


def spatial_size(tensor) -> tuple:
    """``(H, W)`` of a 4D channels-last tensor."""
    return tuple(tensor.shape[1:3])


def at_stride(stride: int) -> Locator:
    """Locator of the last layer whose output has spatial size ``input size / stride``."""

    def locate(encoder: keras.Model):
        height, width = encoder.input_shape[1:3]
        target = (height // stride, width // stride)
        found = None
        for (
            layer
        ) in encoder.layers:  # topological order (functional models sort by depth)
            if isinstance(layer, keras.layers.InputLayer):
                continue
            output = layer.output
            if isinstance(output, (list, tuple)) or len(output.shape) != 4:
                continue
            if spatial_size(output) == target:
                found = output
        if found is None:
            raise ValueError(
                f"encoder {encoder.name!r} has no {target[0]}x{target[1]} feature map "
                f"(stride {stride} of a {height}x{width} input)"
            )
        return found

    locate.description = f"stride {stride}"
    return locate


def named(layer_name: str) -> Locator:
    """Locator of the output of the layer called ``layer_name`` (deterministic names only)."""

    def locate(encoder: keras.Model):
        return encoder.get_layer(layer_name).output

    locate.description = layer_name
    return locate


def conv_stem(stride: int = 2, filters: int = 64) -> Locator:
    """Locator that builds a stride-``stride`` feature map from the encoder input.

    ``log2(stride)`` Conv3x3(stride 2)-BN-ReLU layers followed by one Conv3x3-BN-ReLU, named
    ``stem_s{stride}_conv{k}`` / ``_bn{k}`` / ``_relu{k}``. Its weights are trained with the decoder
    (no ImageNet weights exist for it).
    """
    if stride < 2 or stride & (stride - 1):
        raise ValueError(f"conv_stem stride must be a power of two >= 2, got {stride}")
    n_strided = stride.bit_length() - 1

    def locate(encoder: keras.Model):
        x = encoder.input
        prefix = f"stem_s{stride}"
        for k in range(n_strided + 1):
            x = keras.layers.Conv2D(
                filters,
                3,
                strides=2 if k < n_strided else 1,
                padding="same",
                use_bias=False,
                kernel_initializer="he_uniform",
                name=f"{prefix}_conv{k + 1}",
            )(x)
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn{k + 1}")(x)
            x = keras.layers.Activation("relu", name=f"{prefix}_relu{k + 1}")(x)
        return x

    locate.description = f"conv stem (stride {stride}, {filters} filters)"
    return locate


__all__ = ["Locator", "at_stride", "conv_stem", "named", "spatial_size"]
