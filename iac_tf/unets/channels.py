"""Feeding 1-4 channel medical images to encoders pretrained on 3-channel ImageNet.

With ``encoder_weights=None`` (or ``C == 3``) an encoder is simply built for ``(H, W, C)``.
With ImageNet weights (``"imagenet"`` or a weights file of the 3-channel encoder) and ``C != 3``,
:func:`build_with_channels` builds the encoder twice: once for 3 channels with the weights, once
for ``C`` channels without, and copies every weight across. Only the arrays that touch the input
channels differ in shape, and they are adapted so that a constant image gives the same response
as the gray RGB image of the same intensity:

* a first-layer kernel ``(kh, kw, 3, F)`` becomes ``mean_rgb(kernel) * 3 / C`` repeated ``C``
  times (for ``C == 1`` this is the sum over RGB, as in timm's ``adapt_input_conv``);
* a per-input-channel vector of length 3 (ResNet50's input BatchNorm ``bn_data``) becomes its
  mean repeated ``C`` times.

The model graph is identical to the ``weights=None`` one (no adapter layer), so a U-Net trained
from ImageNet weights and one trained from scratch save, load and implant the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from iac_tf._keras import keras

RGB = 3


def adapt_array(array: np.ndarray, shape: tuple) -> np.ndarray:
    """Adapt one weight array of a 3-channel encoder to ``shape`` (see the module docstring)."""
    shape = tuple(shape)
    if array.shape == shape:
        return array
    channels = shape[-2] if array.ndim == 4 else shape[0]
    if (
        array.ndim == 4
        and array.shape[2] == RGB
        and array.shape[:2] + array.shape[3:] == (shape[:2] + shape[3:])
    ):
        mean = array.mean(axis=2, keepdims=True) * (RGB / channels)
        return np.repeat(mean, channels, axis=2).astype(array.dtype)
    if array.ndim == 1 and array.shape == (RGB,):
        return np.full(shape, array.mean(), dtype=array.dtype)
    raise ValueError(f"cannot adapt a weight of shape {array.shape} to {shape}")


def transfer_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy all weights of ``source`` into the same architecture ``target`` built for other
    input channels, layer by layer in topological order (auto-generated names may differ)."""
    if len(source.layers) != len(target.layers):
        raise ValueError("source and target encoders have different layer counts")
    for src, dst in zip(source.layers, target.layers):
        if type(src) is not type(dst):
            raise ValueError(
                f"layer mismatch: {src.name} ({type(src).__name__}) vs {dst.name}"
            )
        weights = [
            adapt_array(a, b.shape)
            for a, b in zip(src.get_weights(), dst.get_weights())
        ]
        dst.set_weights(weights)


def build_with_channels(
    make_encoder: Callable[[tuple, object], keras.Model], input_shape: tuple, weights
) -> keras.Model:
    """``make_encoder(input_shape, weights)`` for any channel count (see the module docstring)."""
    input_shape = tuple(input_shape)
    if weights is None or input_shape[-1] == RGB:
        return make_encoder(input_shape, weights)
    source = make_encoder(input_shape[:-1] + (RGB,), weights)
    target = make_encoder(input_shape, None)
    transfer_weights(source, target)
    return target


__all__ = ["adapt_array", "build_with_channels", "transfer_weights"]
