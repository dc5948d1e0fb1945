"""The SearchCell's node sums computed state by state instead of edge by edge (same maths).

:class:`~iac_tf.search.SearchCell` keeps one :class:`~iac_tf.search.MixedOp` layer per edge (the
weights omega live there, and they are what is saved and loaded). Evaluated edge by edge
(``implementation="reference"``), eq. (2)-(5) cost ~150 small ops per cell. This module evaluates
exactly the same function with the ops grouped by the state they read:

* Every edge that reads state ``x_i`` takes the same first ``C/K`` channels ``x_i[..., :C/K]``
  (eq. (3), mask M), so ReLU, max pooling and average pooling of it are computed once per state.
* The ``n_i`` edges that read ``x_i`` apply their own depthwise kernels to the same tensor: one
  depthwise convolution with the ``n_i`` kernels stacked as a channel multiplier. Their pointwise
  1x1 convolutions become one 1x1 convolution with a block(-diagonal) kernel, and their
  non-affine BatchNorms one fused BatchNorm over the ``n_i * C/K`` channels (per-channel
  statistics, so each block sees exactly its own batch statistics; the moving statistics of each
  edge's BatchNorm layer are updated from its own slice, as Keras does).
* ``psi_e * phi_{e,o}`` is one float32 scalar per (edge, op) (eq. (1), (4)-(10)), so the weighted
  sum of eq. (2) and the Psi weighting of eq. (5) need no per-edge loop: the conv ops take it as
  the scale of their last (non-affine) BN, the parameter-free ops (skip, pools and their
  training-mode BN, whose output is the same for every edge reading a state, so computed and
  kept once per state) by one matrix product per state (:mod:`iac_tf.search.kernels`, which
  also holds the hand-written gradients of the pooling and depthwise ops); ``none`` contributes
  exactly zero and is skipped.
* Each state is split once into ``M x_i`` and the bypass ``(1 - M) x_i``, shared by the edges that
  read it (each multiplication by ``Psi_e`` keeps its input for d/dPsi: one copy per state).
* The channel shuffle is linear and the same for every edge, so it is applied once per node to
  ``concat(sum_i Psi_ij mixed_ij, sum_i Psi_ij bypass_ij)`` instead of once per edge (eq. (5)).

Only the order of floating-point operations changes; tests compare both paths' outputs,
gradients for omega, alpha and beta, and BN statistics (``tests/search/test_fused_cell.py``).
Under float16 the conv ops run edge by edge (see :func:`conv_op_group`).
"""

from __future__ import annotations

import numpy as np

from iac_tf._keras import tf
from iac_tf.search.channel_shuffle import channel_shuffle
from iac_tf.search.kernels import avg_pool_3x3, channels_shape, constant, depthwise_conv, weighted_copies
from iac_tf.search.operations import BN_EPSILON, BN_MOMENTUM, PRIMITIVES
from iac_tf.search.topology import edge_list, node_edge_slices

CONV_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
OP_INDEX = {name: o for o, name in enumerate(PRIMITIVES)}
#: Edges' conv ops are stacked into one depthwise + one block 1x1 convolution only up to this many
#: channels per edge (C/K); above it they run edge by edge (our choice, from benchmarks/search_cell.py).
GROUP_CONVS_MAX_CHANNELS = 8


def consumers(steps: int) -> list[list[int]]:
    """``consumers(steps)[i]``: the edges (in edge order) that read state ``i``."""
    out = [[] for _ in range(steps + 2)]
    for e, (_, i) in enumerate(edge_list(steps)):
        out[i].append(e)
    return out


def fused_batch_norm(x, scale, offset, mean, variance, training: bool, avg_factor: float = 1.0):
    """``tf.compat.v1.nn.fused_batch_norm`` (NHWC, its epsilon floor of 1.001e-5) returning
    ``(y, mean, variance)``; the running statistics with ``avg_factor`` in training mode.

    In float32 this calls the ``FusedBatchNorm`` op, not ``FusedBatchNormV3``: the same CPU kernel,
    but the gradient tape knows the former's statistics outputs need no incoming gradient, while
    for V3 it traces a zero tensor for each of its five unused outputs, per BN, per gradient (1.6k
    of the 45.1k ops of the traced base search step).
    """
    epsilon = max(BN_EPSILON, 1.001e-5)
    if x.dtype == tf.float32:
        y, new_mean, new_var, _, _ = tf.raw_ops.FusedBatchNorm(
            x=x, scale=scale, offset=offset, mean=mean, variance=variance, epsilon=epsilon,
            exponential_avg_factor=avg_factor if training else 1.0, is_training=training)
        return y, new_mean, new_var
    return tf.compat.v1.nn.fused_batch_norm(
        x, scale, offset, mean=mean, variance=variance, epsilon=epsilon, is_training=training,
        exponential_avg_factor=avg_factor if training else 1.0)


def batch_norm_group(x, bns, training: bool, weight=None):
    """Non-affine BatchNorm of ``x`` whose channels are the concatenated channels of ``bns``,
    times ``weight``.

    Mirrors tf_keras' fused BatchNormalization (``fused_batch_norm`` with the exponential
    moving-average factor ``1 - momentum``; the moving variance averages the Bessel-corrected
    batch variance, as tf_keras does by default), then writes each layer's slice back.

    ``weight`` (float32, one value per channel, or None for 1) enters as the fused op's scale:
    ``weight * BN(x)`` is one op whose gradient yields d/d(weight) directly, so the mixing
    weights ``psi_e phi_{e,o}`` of the ops that end in a BN cost no multiplication of their own,
    and BN's output need not be kept for the backward pass.
    """
    mean = tf.concat([bn.moving_mean for bn in bns], axis=constant(0))
    var = tf.concat([bn.moving_variance for bn in bns], axis=constant(0))
    channels = int(x.shape[-1])
    ones, zeros = constant(np.ones(channels), tf.float32), constant(np.zeros(channels), tf.float32)
    scale = ones if weight is None else weight
    y, new_mean, new_var = fused_batch_norm(x, scale, zeros, mean, var, training, 1.0 - BN_MOMENTUM)
    if not training:
        return y
    for bn, m, v in zip(bns, tf.split(new_mean, len(bns), axis=constant(0)),
                        tf.split(new_var, len(bns), axis=constant(0))):
        bn.moving_mean.assign(m)
        bn.moving_variance.assign(v)
    return y


def block_kernel(kernels, multiplier_layout: bool, dtype):
    """The n edges' ``(1, 1, c, c)`` pointwise kernels as one block ``(1, 1, c*n, n*c)`` kernel.

    Output channel ``k*c + f`` takes edge ``k``'s kernel ``[d, f]`` from input channel
    ``d*n + k`` (``multiplier_layout``: the output order of a depthwise convolution with
    channel multiplier n) or ``k*c + d``; every other entry is zero. Built from dense ops
    (reshape, mask, transpose) whose gradients stay small when traced.
    """
    n, c = len(kernels), int(kernels[0].shape[-1])
    # n x (1, 1, c, c) stacked: [k, 1, 1, d, f], the memory layout of [k, d, 1, f]
    pw = tf.reshape(tf.stack(kernels), constant([n, c, 1, c]))
    mask = np.eye(n, dtype=np.float32).reshape(n, 1, n, 1)  # [k, 1, g, 1] = delta(k, g)
    block = pw * constant(mask, pw.dtype)  # [k, d, g, f]
    if multiplier_layout:
        block = tf.transpose(block, constant([1, 0, 2, 3]))  # [d, k, g, f]
    return tf.cast(tf.reshape(block, constant([1, 1, c * n, n * c])), dtype)


def _stack(kernels, axis):
    """``tf.concat(kernels, axis)`` for kernels of the same shape, as a stack and a reshape: the
    gradient of a concatenation traces ~n + 6 ops (offsets, shapes, n slices), of a stack two."""
    shape = kernels[0].shape.as_list()
    shape[axis] *= len(kernels)
    return tf.reshape(tf.stack(kernels, axis=axis), constant(shape))


def _max_pool_3x3(x):
    return tf.nn.max_pool2d(x, 3, 1, "SAME")


def _pointwise(x, kernel):
    return tf.nn.conv2d(x, kernel, 1, "VALID")


def conv_op_per_edge(r, op, dtype, training, weight=None):
    """One ``ReLUSepConvBN`` of one edge on the already ReLU'd input ``r``, times ``weight``
    (float32, per channel) if given."""
    h = r
    for rep in range(op.repeats):
        if rep:
            h = tf.nn.relu(h)
        h = depthwise_conv(h, tf.cast(op.depthwise[rep].depthwise_kernel, dtype), op.dilation_rate)
        h = _pointwise(h, tf.cast(op.pointwise[rep].kernel, dtype))
        h = batch_norm_group(h, [op.bns[rep]], training, weight if rep == op.repeats - 1 else None)
    return h


def conv_op_group(r, ops, dtype, training, weight=None):
    """One candidate conv op (``ReLUSepConvBN``) of ``n`` edges on the same ReLU'd input ``r``,
    times ``weight`` (float32 ``(n*c,)``, edge-major) if given.

    Returns ``(B, H, W, n*c)``, edge-major (edge ``k``'s output is channels ``k*c .. k*c+c-1``).
    With more than ``GROUP_CONVS_MAX_CHANNELS`` channels per edge the edges run one by one (the
    block kernels of the grouped form waste n x the pointwise FLOPs), and so they do in float16:
    there the block kernel's filter gradient measured 2.9x the float16 error of the per-edge
    convolutions against float32 (``tests/search/test_fused_cell.py``).
    """
    n, c = len(ops), int(r.shape[-1])
    if n == 1 or c > GROUP_CONVS_MAX_CHANNELS or tf.as_dtype(dtype) != tf.float32:
        ws = [None] * n if weight is None else tf.split(weight, n, axis=constant(0))
        ys = [conv_op_per_edge(r, op, dtype, training, w) for op, w in zip(ops, ws)]
        return ys[0] if n == 1 else tf.concat(ys, axis=constant(-1))
    first = ops[0]
    # block 1: depthwise with the n kernels as channel multiplier (output channel d*n + k) ...
    dw = _stack([op.depthwise[0].depthwise_kernel for op in ops], 3)  # (k, k, c, n)
    h = depthwise_conv(r, tf.cast(dw, dtype), first.dilation_rate)
    # ... and one 1x1 conv mapping channel d*n + k to k*c + f with edge k's pointwise kernel.
    h = _pointwise(h, block_kernel([op.pointwise[0].kernel for op in ops], True, dtype))
    h = batch_norm_group(h, [op.bns[0] for op in ops], training, weight if first.repeats == 1 else None)
    for rep in range(1, first.repeats):  # sep_conv: the second (ReLU, dw, pw, BN) block
        dw = _stack([op.depthwise[rep].depthwise_kernel for op in ops], 2)  # (k, k, n*c, 1)
        h = depthwise_conv(tf.nn.relu(h), tf.cast(dw, dtype), first.dilation_rate)
        h = _pointwise(h, block_kernel([op.pointwise[rep].kernel for op in ops], False, dtype))
        h = batch_norm_group(h, [op.bns[rep] for op in ops], training,
                             weight if rep == first.repeats - 1 else None)
    return h


def batch_norm_shared(x, bns, training: bool):
    """Non-affine BatchNorm of ``x`` for ``n`` edges whose BN input is this same tensor.

    In training mode every edge normalises with the batch statistics of ``x``, so the output
    is computed once (not ``n`` times on a tiled copy) and each edge's moving statistics are
    updated from the same batch statistics, as its own BN layer would. In inference mode the
    edges' moving statistics may differ: their outputs are computed from a tiled copy.

    Returns ``(B, H, W, c)`` in training mode (the same for every edge), else
    ``(B, H, W, n, c)``.
    """
    n, c = len(bns), int(x.shape[-1])
    if not training:
        return _split_edges(batch_norm_group(tf.tile(x, constant([1, 1, 1, n])), bns, False), n)
    ones, zeros = constant(np.ones(c), tf.float32), constant(np.zeros(c), tf.float32)
    # exponential_avg_factor 1: the returned "running" statistics are the batch mean and the
    # Bessel-corrected batch variance, which each layer folds into its own moving average.
    y, batch_mean, batch_var = fused_batch_norm(x, ones, zeros, zeros, ones, True, 1.0)
    for stat, batch in (("moving_mean", batch_mean), ("moving_variance", batch_var)):
        old = tf.concat([getattr(bn, stat) for bn in bns], axis=constant(0))
        new = (constant(BN_MOMENTUM, tf.float32) * old
               + constant(1.0 - BN_MOMENTUM, tf.float32) * tf.tile(batch, constant([n])))
        for bn, value in zip(bns, tf.split(new, n, axis=constant(0))):
            getattr(bn, stat).assign(value)
    return y


def _split_edges(x, n):
    """``(B, H, W, n*c)`` edge-major -> ``(B, H, W, n, c)`` (a view: no copy)."""
    return tf.reshape(x, channels_shape(x, n, int(x.shape[-1]) // n))


def mixed_group(x_ops, edges, weights, dtype, training):
    """``sum_o psi_e phi_{e,o} o_e(x_ops)`` for the edges ``edges`` (MixedOps) reading ``x_ops``.

    ``weights``: ``(len(edges), num_ops)`` float32, the rows ``psi_e * phi_e``. Returns
    ``(B, H, W, n, c)``: edge ``k``'s sum (eq. (2), (5) without the bypass) at ``[..., k, :]``.

    The conv ops take their weights as the scale of their last BN (:func:`batch_norm_group`).
    The parameter-free ops (skip, pools with their training-mode BN) give the same output for
    every edge reading ``x_ops``: the three are weighted for the ``n`` edges in one matrix product
    (:func:`~iac_tf.search.kernels.weighted_copies`), which keeps for d/d(weights) the three
    ``c``-channel tensors, not ``n`` copies.
    """
    n, c = len(edges), int(x_ops.shape[-1])
    # (n*c,) float32 per op, edge-major: edge k's psi_e phi_{e,o} for each of its channels
    tiled = tf.tile(tf.expand_dims(weights, constant(1)), constant([1, c, 1]))  # (n, c, num_ops)
    per_channel = tf.unstack(tf.reshape(tiled, constant([n * c, -1])), axis=1)

    r = tf.nn.relu(x_ops)  # shared by every conv op of every edge reading this state
    free = [OP_INDEX[name] for name in ("skip_connect", "max_pool_3x3", "avg_pool_3x3")]
    pooled = [batch_norm_shared(pool(x_ops), [edge.pool_bns[o] for edge in edges], training)
              for pool, o in ((_max_pool_3x3, free[1]), (avg_pool_3x3, free[2]))]
    if training:  # the three outputs are the same for every edge: one weighted sum per edge
        total = weighted_copies([x_ops, *pooled], tf.gather(weights, constant(free), axis=constant(1)))
    else:  # the pools' BN outputs (B, H, W, n, c) differ per edge (own moving statistics)
        column = [tf.reshape(tf.cast(weights[:, o], dtype), [n, 1]) for o in free]
        total = tf.expand_dims(x_ops, -2) * column[0] + pooled[0] * column[1] + pooled[1] * column[2]
    for name in CONV_OPS:  # psi_e phi_{e,o} enters the op's last BN as its scale
        o = OP_INDEX[name]
        y = conv_op_group(r, [edge.ops[o] for edge in edges], dtype, training, per_channel[o])
        total = total + _split_edges(y, n)
    return total


def fused_nodes(cell, states, phi, psi, training: bool):
    """The intermediate nodes of ``cell`` (eq. (5)) from its two preprocessed inputs ``states``.

    ``phi`` ``(num_edges, num_ops)`` and ``psi`` ``(num_edges,)`` are float32.
    """
    dtype = cell.compute_dtype
    c = cell.C // cell.K
    weights = tf.expand_dims(psi, constant(-1)) * phi  # psi_e * phi_{e,o}, float32
    readers = consumers(cell.steps)
    parts = {}  # edge e -> (state i it reads, its sum_o psi_e phi_{e,o} o(M x_i))
    passing = {}  # state i -> (1 - M) x_i
    states = list(states)

    # Tensors are cut with split/unstack, not slicing: the gradient of n slices of one tensor is
    # n zero-padded full-size tensors summed (StridedSliceGrad + AddN, measured 14 % of a fused
    # cell's step), that of a split is one concatenation.
    def read_state(i):
        group = readers[i]
        if cell.K > 1:  # eq. (3): M x_i (the same for every reader) and (1 - M) x_i
            x_ops, passing[i] = tf.split(states[i], constant([c, cell.C - c]), axis=constant(-1))
        else:
            x_ops = states[i]
        mixed = mixed_group(x_ops, [cell.edges[e] for e in group],
                            tf.gather(weights, constant(group)), dtype, training)
        for e, part in zip(group, tf.unstack(mixed, axis=-2)):
            parts[e] = (i, part)

    read_state(0)
    read_state(1)
    psi_cast = tf.unstack(tf.cast(psi, dtype))
    for j, (start, end) in enumerate(node_edge_slices(cell.steps)):
        part = tf.add_n([parts[e][1] for e in range(start, end)])
        if cell.K == 1:
            node = part
        else:  # eq. (3): (1 - M) x_i passes, weighted by Psi_e (eq. (5))
            bypass = tf.add_n([psi_cast[e] * passing[parts[e][0]] for e in range(start, end)])
            node = channel_shuffle(tf.concat([part, bypass], constant(-1)), cell.K)
        states.append(node)
        if j + 2 < len(readers) and readers[j + 2]:
            read_state(j + 2)
    assert len(parts) == len(edge_list(cell.steps))
    return states[2:]
