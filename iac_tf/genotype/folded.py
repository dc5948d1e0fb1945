"""The discrete cell in inference mode with its BatchNorms folded away (same function, fewer ops).

In inference a BatchNorm is the per-channel affine map ``y = s * x + t`` with::

    s = gamma / sqrt(moving_variance + epsilon)        t = beta - moving_mean * s

(``gamma = 1``, ``beta = 0`` where it has none). Every BN of the discrete cell follows a
convolution without bias (the preprocessing's and the separable convolutions' 1x1 ones), so the
two are one convolution with kernel ``W * s`` (scaled per output channel) and bias ``t``.

The dilated depthwise convolutions (``dil_conv_kxk``, dilation ``d``) are run as undilated ones
with the ``(k - 1) d + 1`` square kernel that has the ``k x k`` taps ``d`` apart and zeros between
(`dense_dilated_kernel`): TensorFlow's dilated depthwise convolution on CPU goes through
space-to-batch and back (three ops and two copies of the tensor), and the dense kernel measured
1.2x (5x5) to 2.2x (3x3) faster on (32, 128, 128, 8) tensors.

These kernels are computed from the layers' variables on every call (a few thousand numbers);
nothing is stored, so the saved model holds the same variables as the training one.
``tests/genotype/test_folded.py`` compares each against NumPy and the Keras layers.
"""

from __future__ import annotations

from typing import Any

from iac_tf._keras import keras, tf
from iac_tf.search.operations import Identity, ReLUConvBN, ReLUSepConvBN, Zero, upsample_nearest

_STRIDES = [1, 1, 1, 1]


def batch_norm_affine(bn: Any):
    """``(s, t)`` of the module docstring for a Keras ``BatchNormalization`` in inference, float32."""
    variance = tf.cast(bn.moving_variance, tf.float32)
    scale = tf.math.rsqrt(variance + bn.epsilon)  # the epsilon the layer runs, fused or not
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, tf.float32)
    shift = -tf.cast(bn.moving_mean, tf.float32) * scale
    if bn.center:
        shift = shift + tf.cast(bn.beta, tf.float32)
    return scale, shift


def folded_pointwise(x, conv: Any, bn: Any):
    """``bn(conv(x))`` in inference for a bias-free 1x1 ``conv``: one convolution with a bias."""
    scale, shift = batch_norm_affine(bn)
    kernel = tf.cast(conv.kernel, tf.float32) * scale
    y = tf.nn.conv2d(x, tf.cast(kernel, x.dtype), 1, "VALID")
    return tf.nn.bias_add(y, tf.cast(shift, x.dtype))


def dense_dilated_kernel(kernel, dilation: int):
    """``(k, k, c, m)`` -> ``((k - 1) d + 1, (k - 1) d + 1, c, m)``: the taps ``d`` apart, zeros
    between, so that an undilated convolution with it is the ``d``-dilated one with ``kernel``."""
    if dilation == 1:
        return kernel
    for axis in (0, 1):
        k = int(kernel.shape[axis])
        shape = kernel.shape.as_list()
        gaps = tf.zeros(shape[:axis] + [k, dilation - 1] + shape[axis + 1:], kernel.dtype)
        spread = tf.concat([tf.expand_dims(kernel, axis + 1), gaps], axis=axis + 1)
        spread = tf.reshape(spread, shape[:axis] + [k * dilation] + shape[axis + 1:])
        kernel = spread[: (k - 1) * dilation + 1] if axis == 0 else spread[:, : (k - 1) * dilation + 1]
    return kernel


def _depthwise(x, layer: Any):
    kernel = dense_dilated_kernel(tf.cast(layer.depthwise_kernel, x.dtype), int(layer.dilation_rate[0]))
    return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=kernel, strides=_STRIDES, padding="SAME")


def folded_preprocess(x, layer: ReLUConvBN, upsampling=None):
    """``layer(x, upsampling=upsampling)`` in inference: ReLU, the folded 1x1 convolution, then
    the nearest upsampling (the BN's affine map commutes with pixel replication)."""
    y = folded_pointwise(tf.nn.relu(x), layer.conv, layer.bn)
    return y if upsampling is None else upsample_nearest(y, upsampling)


def folded_op(x, op: Any):
    """A discrete cell operation ``op(x, training=False)`` with its BNs folded away."""
    if isinstance(op, ReLUSepConvBN):
        for depthwise, pointwise, bn in zip(op.depthwise, op.pointwise, op.bns):
            x = folded_pointwise(_depthwise(tf.nn.relu(x), depthwise), pointwise, bn)
        return x
    if isinstance(op, Identity):
        return x
    if isinstance(op, Zero):
        return tf.zeros_like(x)
    if isinstance(op, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return op(x)
    raise TypeError(f"no folded inference path for {type(op).__name__} {op.name!r}")
