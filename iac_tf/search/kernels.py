"""Two primitives of the fused search cell with hand-written gradients (same maths, faster on CPU).

The stride-1, ``SAME`` 3x3 average pooling and the undilated depthwise convolution are the
search cell's most frequent ops. TensorFlow's own gradient kernels for them measured 2-4x the
time of their forward pass on this CPU (oneDNN, (8, 128, 128, 4) tensors,
``benchmarks/search_cell.py``); both gradients are themselves a forward op of the same kind:

* Average pooling (padding excluded, as ``tf.nn.avg_pool2d``): with ``n(q)`` the number of valid
  pixels in the 3x3 window at ``q``, ``y(q) = sum_{p in W(q)} x(p) / n(q)``. The window is
  symmetric, so ``dL/dx(q) = sum_{p in W(q)} g(p) / n(p) = n(q) * avgpool(g / n)(q)``.
* Depthwise convolution, kernel ``w`` (k x k, odd k), channel multiplier ``m``:
  ``y(p, c*m + j) = sum_t w(t, c, j) x(p + t - r, c)`` with ``r = (k - 1) / 2``, so
  ``dL/dx(q, c) = sum_j sum_t w(k - 1 - t, c, j) g(q + t - r, c*m + j)``: a depthwise
  convolution (multiplier 1) of ``g`` with the spatially flipped kernel, then a sum over the ``m``
  outputs of each input channel (a 1x1 convolution with a 0/1 kernel). The filter gradient is
  TensorFlow's own ``DepthwiseConv2dNativeBackpropFilter`` (correct without dilation).

Dilated depthwise convolutions keep TensorFlow's gradient (through space-to-batch): on CPU the
native op's gradient kernels ignore the dilation. Only the order of floating-point additions
changes; ``tests/search/test_kernels.py`` compares both against TensorFlow's gradients.
"""

from __future__ import annotations

import numpy as np

from iac_tf._keras import tf

_STRIDES = [1, 1, 1, 1]


def _window_counts(x):
    """``(1, H, W, 1)``: the number of valid pixels in the 3x3 window at each position of ``x``."""
    if x.shape[1:3].is_fully_defined():
        h, w = x.shape[1:3].as_list()
        rows = np.minimum(np.arange(h) + 1, 2) + np.minimum(h - np.arange(h), 2) - 1
        cols = np.minimum(np.arange(w) + 1, 2) + np.minimum(w - np.arange(w), 2) - 1
        return tf.constant(np.outer(rows, cols).reshape(1, h, w, 1), x.dtype)
    ones = tf.ones(tf.concat([[1], tf.shape(x)[1:3], [1]], axis=0), x.dtype)
    return tf.nn.conv2d(ones, tf.ones([3, 3, 1, 1], x.dtype), 1, "SAME")


@tf.custom_gradient
def avg_pool_3x3(x):
    """``tf.nn.avg_pool2d(x, 3, 1, "SAME")`` with the gradient ``n * avgpool(g / n)``."""
    y = tf.nn.avg_pool2d(x, 3, 1, "SAME")

    def grad(g):
        counts = _window_counts(x)
        return tf.nn.avg_pool2d(g / counts, 3, 1, "SAME") * counts

    return y, grad


def _depthwise_native(x, kernel):
    return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=kernel, strides=_STRIDES, padding="SAME")


@tf.custom_gradient
def _depthwise_same(x, kernel):
    y = _depthwise_native(x, kernel)

    def grad(g):
        k, _, c, m = kernel.shape.as_list()
        z = _depthwise_native(g, tf.reshape(tf.reverse(kernel, [0, 1]), [k, k, c * m, 1]))
        if m > 1:  # sum the m outputs of each input channel: output c*m + j -> channel c
            select = np.kron(np.eye(c), np.ones((m, 1))).reshape(1, 1, c * m, c)
            z = tf.nn.conv2d(z, tf.constant(select, z.dtype), 1, "VALID")
        dk = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=x, filter_sizes=[k, k, c, m], out_backprop=g, strides=_STRIDES, padding="SAME")
        return z, dk

    return y, grad


def depthwise_conv(x, kernel, dilation: int = 1):
    """Stride-1 ``SAME`` depthwise convolution of ``x`` with ``kernel`` ``(k, k, c, m)`` (odd k)."""
    if dilation == 1:
        return _depthwise_same(x, kernel)
    return tf.nn.depthwise_conv2d(x, kernel, _STRIDES, "SAME", dilations=[dilation, dilation])


def edge_weighted(x, w):
    """``x[..., None, :] * w[:, None]``: the ``n`` edges' weighted copies ``(B, H, W, n, c)`` of
    one parameter-free op's output ``x`` ``(B, H, W, c)``, ``w`` ``(n,)``.

    In float32 the gradient is two matrix products over the ``B*H*W`` pixels instead of
    TensorFlow's broadcast gradient (a full-size product and a reduction over every axis but
    ``n`` for d/dw, which measured 12-13 ms against 2-3 ms at (8, 128, 128, 4, 4)):
    ``dL/dx = G S`` with ``S[k*c + i, i] = w_k`` and ``dL/dw_k = sum_{p,i} (X^T G)[i, k*c + i]``.
    In float16 the plain broadcast (and its gradient) is kept: a matrix product would sum the
    ``B*H*W`` products of d/dw in float16.
    """
    if x.dtype != tf.float32:
        return tf.expand_dims(x, -2) * tf.reshape(w, [-1, 1])
    return _edge_weighted(x, w)


@tf.custom_gradient
def _edge_weighted(x, w):
    n, c = int(w.shape[0]), int(x.shape[-1])
    y = tf.expand_dims(x, -2) * tf.reshape(w, [n, 1])

    def grad(g):
        flat = tf.reshape(g, [-1, n * c])
        eye = tf.eye(c, dtype=x.dtype)
        dx = tf.matmul(flat, tf.reshape(w[:, None, None] * eye, [n * c, c]))
        m = tf.reshape(tf.matmul(tf.reshape(x, [-1, c]), flat, transpose_a=True), [c, n, c])
        return tf.reshape(dx, tf.shape(x)), tf.reduce_sum(m * eye[:, None, :], axis=[0, 2])

    return y, grad
