"""Primitives of the fused search cell with hand-written gradients (same maths, faster on CPU).

The stride-1, ``SAME`` 3x3 average pooling and the depthwise convolution are the
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
  outputs of each input channel (a 1x1 convolution with a 0/1 kernel). Dilated, ``t - r`` is
  scaled by the dilation on both sides: the same flipped-kernel convolution, dilated. The filter
  gradient is TensorFlow's ``DepthwiseConv2dNativeBackpropFilter``; dilated, the native op runs
  undilated on the ``d x d`` space-to-batch sub-grids (on CPU its kernels ignore the dilation
  attribute), as ``tf.nn.depthwise_conv2d`` does, but written out with static paddings: 3 ops
  where TensorFlow's wrapper and its traced gradient cost ~20 per call.

Only the order of floating-point additions changes; ``tests/search/test_kernels.py`` compares
every gradient against TensorFlow's, NumPy and central differences.

Which of the two depthwise formulations runs depends on the machine (:data:`DEPTHWISE_FORM`,
:func:`depthwise_form`): the hand-written gradients where TensorFlow runs oneDNN, TensorFlow's own
(``tf.nn.depthwise_conv2d``) where it runs its Eigen kernels (``benchmarks/depthwise_forms.py``;
docs/decisions.md, "Depthwise convolution per machine").

Also here, for every traced op of the fused cell: :func:`constant`, one ``Const`` per value and
graph, and :func:`channels_shape`, constant reshape targets where H and W are static.
"""

from __future__ import annotations

import functools

import numpy as np

from iac_tf._keras import tf
from iac_tf.machine import onednn_enabled

_STRIDES = [1, 1, 1, 1]

#: How :func:`depthwise_conv` computes (the same function, another order of additions):
#: ``"hand"`` (the op with the hand-written gradients below), ``"tensorflow"``
#: (``tf.nn.depthwise_conv2d`` and TensorFlow's gradients, as Keras' ``DepthwiseConv2D``), or
#: ``"auto"`` (default): chosen per machine by :func:`depthwise_form`. Read when a function is
#: traced.
DEPTHWISE_FORM = "auto"
DEPTHWISE_FORMS = ("auto", "hand", "tensorflow")


def depthwise_form() -> str:
    """The formulation :func:`depthwise_conv` traces now: :data:`DEPTHWISE_FORM`, or for
    ``"auto"``: ``"hand"`` where TensorFlow runs oneDNN (its gradients measured 1.3-2.0x the
    CPU time of the hand-written ones at the search cell's grouped shapes, AVX-512 and AVX2 alike),
    ``"tensorflow"`` where it runs its Eigen kernels (there the hand-written ones measured 0.89-1.06x,
    median 0.95x, TensorFlow's own the faster)."""
    if DEPTHWISE_FORM not in DEPTHWISE_FORMS:
        raise ValueError(f"DEPTHWISE_FORM must be one of {DEPTHWISE_FORMS}, got {DEPTHWISE_FORM!r}")
    if DEPTHWISE_FORM != "auto":
        return DEPTHWISE_FORM
    return "tensorflow" if onednn_enabled() is False else "hand"


def _window_counts(x):
    """``(1, H, W, 1)``: the number of valid pixels in the 3x3 window at each position of ``x``."""
    if x.shape[1:3].is_fully_defined():
        h, w = x.shape[1:3].as_list()
        rows = np.minimum(np.arange(h) + 1, 2) + np.minimum(h - np.arange(h), 2) - 1
        cols = np.minimum(np.arange(w) + 1, 2) + np.minimum(w - np.arange(w), 2) - 1
        return constant(np.outer(rows, cols).reshape(1, h, w, 1), x.dtype)
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


def _dilated_paddings(x, k: int, dilation: int):
    """Space-to-batch paddings of ``x`` and of ``g`` for a ``SAME`` ``k x k`` convolution dilated by
    ``dilation``, or None where H or W is not static.

    Padded by ``r*d`` (``r = (k - 1) / 2``) on both sides and to a multiple of ``d`` at the end, the
    ``d x d`` sub-grids of ``x`` give, under a ``VALID`` undilated convolution, the sub-grids of the
    output padded to a multiple of ``d``: ``y(a*d + i) = sum_t w(t) x_pad((a + t)*d + i)``.
    """
    if not x.shape[1:3].is_fully_defined():
        return None
    pad = (k - 1) // 2 * dilation
    extra = [-size % dilation for size in x.shape[1:3].as_list()]
    return [[pad, pad + e] for e in extra], [[0, e] for e in extra]


def _depthwise_forward(x, kernel, dilation):
    if dilation == 1:  # the op itself: tf.nn.depthwise_conv2d's wrapper adds ~5 ops per call
        return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=kernel, strides=_STRIDES, padding="SAME")
    paddings = _dilated_paddings(x, int(kernel.shape[0]), dilation)
    if paddings is None:
        return tf.nn.depthwise_conv2d(x, kernel, _STRIDES, "SAME", dilations=[dilation, dilation])
    # static shapes: the space-to-batch path written out (3 ops; the wrapper traces ~20 more)
    blocks = [dilation, dilation]
    y = tf.raw_ops.DepthwiseConv2dNative(
        input=tf.space_to_batch_nd(x, blocks, paddings[0]), filter=kernel, strides=_STRIDES, padding="VALID")
    return tf.batch_to_space(y, blocks, paddings[1])


def _depthwise_filter_grad(x, kernel, g, dilation):
    if dilation == 1:
        return tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=x, filter_sizes=kernel.shape.as_list(), out_backprop=g, strides=_STRIDES, padding="SAME")
    paddings = _dilated_paddings(x, int(kernel.shape[0]), dilation)
    if paddings is not None:  # the undilated filter gradient of the sub-grids (see _dilated_paddings)
        blocks = [dilation, dilation]
        return tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=tf.space_to_batch_nd(x, blocks, paddings[0]), filter_sizes=kernel.shape.as_list(),
            out_backprop=tf.space_to_batch_nd(g, blocks, paddings[1]), strides=_STRIDES, padding="VALID")
    # unknown H or W: TensorFlow's gradient through its own space-to-batch (the forward op is not
    # rerun: only its input's space-to-batch is needed)
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        y = _depthwise_forward(x, kernel, dilation)
    return tape.gradient(y, kernel, output_gradients=g)


@functools.cache
def _make_depthwise(dilation: int):
    @tf.custom_gradient
    def depthwise(x, kernel):
        def grad(g):
            k, _, c, m = kernel.shape.as_list()
            flipped = tf.reshape(tf.reverse(kernel, [0, 1]), [k, k, c * m, 1])
            dx = _depthwise_forward(g, flipped, dilation)
            if m > 1:  # sum the m outputs of each input channel: output c*m + j -> channel c
                select = np.kron(np.eye(c), np.ones((m, 1))).reshape(1, 1, c * m, c)
                dx = tf.nn.conv2d(dx, constant(select, dx.dtype), 1, "VALID")
            return dx, _depthwise_filter_grad(x, kernel, g, dilation)

        return _depthwise_forward(x, kernel, dilation), grad

    return depthwise


def depthwise_conv(x, kernel, dilation: int = 1):
    """Stride-1 ``SAME`` depthwise convolution of ``x`` with ``kernel`` ``(k, k, c, m)`` (odd k),
    dilated by ``dilation``, in the formulation :func:`depthwise_form` chooses."""
    if depthwise_form() == "tensorflow":
        return tf.nn.depthwise_conv2d(x, kernel, _STRIDES, "SAME", dilations=[dilation, dilation])
    return _make_depthwise(dilation)(x, kernel)


def weighted_copies(tensors, weights):
    """``y[..., k, :] = sum_o weights[k, o] * tensors[o]``: the ``n`` edges' weighted sums
    ``(B, H, W, n, c)`` of ``m`` tensors ``(B, H, W, c)`` that are the same for every edge (the
    parameter-free ops' outputs), ``weights`` ``(n, m)``: in the search cell the parameter-free
    terms of eq. (2), ``weights[k, o] = Psi_e phi_{e,o}`` (eq. (1), (4)-(10), (5)).

    In float32 the forward pass is one matrix product of the concatenated tensors
    ``(B*H*W, m*c)`` with ``W[o*c + i, k*c + i] = weights[k, o]``, and the gradient two products
    per tensor: ``dL/dt_o = G S_o`` with ``S_o[k*c + i, i] = weights[k, o]``, and
    ``dL/dweights[k, o] = sum_{p,i} (T_o^T G)[i, k*c + i]``. Against broadcast products, their sum
    and TensorFlow's broadcast gradient (a full-size product and a reduction over every axis but
    ``n`` per weight column) this measured 11-13 ms against 18-20 ms for the forward and backward
    pass at m = 3, (8, 128, 128, 4, 4). Only the given tensors are kept for the backward pass.
    In float16 the broadcast products are kept: a matrix product would sum the ``B*H*W``
    products of d/dweights in float16.
    """
    if tensors[0].dtype != tf.float32:
        columns = tf.unstack(tf.cast(weights, tensors[0].dtype), axis=1)
        terms = [tf.expand_dims(t, -2) * tf.reshape(w, [-1, 1]) for t, w in zip(tensors, columns)]
        return tf.add_n(terms)
    return _weighted_copies(weights, *tensors)


def constant(value, dtype=tf.int32):
    """``tf.constant(value, dtype)``, made once per graph being traced.

    A traced search step passes the same few shapes, axes and vectors to thousands of ops, and
    each Python value becomes a ``Const`` op of its own (~35 % of the step's graph). The cached
    tensor is created outside any control-dependency scope, so sharing it orders nothing.
    """
    if tf.executing_eagerly():
        return tf.constant(value, dtype)
    graph = tf.compat.v1.get_default_graph()
    array = np.asarray(value, dtype=tf.as_dtype(dtype).as_numpy_dtype)
    key = (array.dtype.str, array.shape, array.tobytes())
    cache = getattr(graph, "_iac_tf_constants", None)
    if cache is None:  # an attribute of the graph: it lives and dies with it
        cache = graph._iac_tf_constants = {}
    if key not in cache:
        with graph.control_dependencies(None):
            cache[key] = tf.constant(array, dtype)
    return cache[key]


def channels_shape(t, *channels):
    """``t``'s shape ``(B, H, W, .)`` with its channel axis replaced by ``channels``: a constant
    (one op fewer to trace per reshape) where H and W are static, else computed."""
    spatial = t.shape[1:-1]
    if spatial.is_fully_defined():
        return constant([-1, *spatial.as_list(), *channels])
    return tf.concat([tf.shape(t)[:-1], list(channels)], axis=0)


@tf.custom_gradient
def _weighted_copies(weights, *tensors):
    n, m = weights.shape.as_list()
    c = int(tensors[0].shape[-1])
    eye = tf.eye(c, dtype=weights.dtype)
    flat = tf.reshape(tf.concat(tensors, axis=constant(-1)), constant([-1, m * c]))
    big = tf.reshape(tf.transpose(weights)[:, None, :, None] * eye[None, :, None, :], [m * c, n * c])
    y = tf.reshape(tf.matmul(flat, big), channels_shape(tensors[0], n, c))

    def grad(g):
        g_flat = tf.reshape(g, constant([-1, n * c]))
        d_tensors, d_weights = [], []
        # S_o = (rows o*c .. o*c + c - 1 of W)^T
        for t, block in zip(tensors, tf.split(big, m, axis=0)):
            d_tensors.append(tf.reshape(tf.matmul(g_flat, block, transpose_b=True), channels_shape(t, c)))
            prod = tf.matmul(tf.reshape(t, constant([-1, c])), g_flat, transpose_a=True)
            prod = tf.reshape(prod, constant([c, n, c]))
            d_weights.append(tf.reduce_sum(prod * eye[:, None, :], axis=[0, 2]))
        return (tf.stack(d_weights, axis=1), *d_tensors)

    return y, grad
