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
  sum of eq. (2) and the Psi weighting of eq. (5) are one multiply-add per op and state; ``none``
  contributes exactly zero and is skipped.
* The channel shuffle is linear and the same for every edge, so it is applied once per node to
  ``concat(sum_i Psi_ij mixed_ij, sum_i Psi_ij bypass_ij)`` instead of once per edge (eq. (5)).

Only the order of floating-point additions changes; tests compare both paths' outputs and
gradients for omega, alpha and beta (``tests/search/test_fused_cell.py``).
"""

from __future__ import annotations

from iac_tf._keras import tf
from iac_tf.search.channel_shuffle import channel_shuffle
from iac_tf.search.operations import BN_EPSILON, BN_MOMENTUM, PRIMITIVES
from iac_tf.search.topology import edge_list

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


def batch_norm_group(x, bns, training: bool):
    """Non-affine BatchNorm of ``x`` whose channels are the concatenated channels of ``bns``.

    Mirrors tf_keras' fused BatchNormalization (``fused_batch_norm`` with the exponential
    moving-average factor ``1 - momentum``; the moving variance averages the Bessel-corrected
    batch variance, as tf_keras does by default), then writes each layer's slice back.
    """
    mean = tf.concat([bn.moving_mean for bn in bns], axis=0)
    var = tf.concat([bn.moving_variance for bn in bns], axis=0)
    channels = int(x.shape[-1])
    ones, zeros = tf.ones([channels], tf.float32), tf.zeros([channels], tf.float32)
    if not training:
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, ones, zeros, mean=mean, variance=var, epsilon=BN_EPSILON, is_training=False
        )
        return y
    y, new_mean, new_var = tf.compat.v1.nn.fused_batch_norm(
        x, ones, zeros, mean=mean, variance=var, epsilon=BN_EPSILON,
        is_training=True, exponential_avg_factor=1.0 - BN_MOMENTUM,
    )
    width = channels // len(bns)
    for k, bn in enumerate(bns):
        bn.moving_mean.assign(new_mean[k * width:(k + 1) * width])
        bn.moving_variance.assign(new_var[k * width:(k + 1) * width])
    return y


def _depthwise(x, kernel, dilation):
    return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME", dilations=[dilation, dilation])


def _pointwise(x, kernel):
    return tf.nn.conv2d(x, kernel, 1, "VALID")


def conv_op_per_edge(r, op, dtype, training):
    """One ``ReLUSepConvBN`` of one edge on the already ReLU'd input ``r``."""
    h = r
    for rep in range(op.repeats):
        if rep:
            h = tf.nn.relu(h)
        h = _depthwise(h, tf.cast(op.depthwise[rep].depthwise_kernel, dtype), op.dilation_rate)
        h = _pointwise(h, tf.cast(op.pointwise[rep].kernel, dtype))
        h = batch_norm_group(h, [op.bns[rep]], training)
    return h


def conv_op_group(r, ops, dtype, training):
    """One candidate conv op (``ReLUSepConvBN``) of ``n`` edges on the same ReLU'd input ``r``.

    Returns ``(B, H, W, n*c)``, edge-major (edge ``k``'s output is channels ``k*c .. k*c+c-1``).
    With more than ``GROUP_CONVS_MAX_CHANNELS`` channels per edge the edges run one by one (the
    block kernels of the grouped form waste n x the pointwise FLOPs).
    """
    n, c = len(ops), int(r.shape[-1])
    if n == 1 or c > GROUP_CONVS_MAX_CHANNELS:
        ys = [conv_op_per_edge(r, op, dtype, training) for op in ops]
        return ys[0] if n == 1 else tf.concat(ys, axis=-1)
    first = ops[0]
    # block 1: depthwise with the n kernels as channel multiplier (output channel d*n + k) ...
    dw = tf.stack([op.depthwise[0].depthwise_kernel[:, :, :, 0] for op in ops], axis=-1)
    h = _depthwise(r, tf.cast(dw, dtype), first.dilation_rate)
    # ... and one 1x1 conv mapping channel d*n + k to k*c + f with edge k's pointwise kernel.
    pw = tf.stack([op.pointwise[0].kernel[0, 0] for op in ops])  # (n, c, c)
    block = tf.einsum("kdf,kg->dkgf", pw, tf.eye(n, dtype=pw.dtype))
    h = _pointwise(h, tf.cast(tf.reshape(block, [1, 1, c * n, n * c]), dtype))
    h = batch_norm_group(h, [op.bns[0] for op in ops], training)
    for rep in range(1, first.repeats):  # sep_conv: the second (ReLU, dw, pw, BN) block
        dw = tf.concat([op.depthwise[rep].depthwise_kernel for op in ops], axis=2)
        h = _depthwise(tf.nn.relu(h), tf.cast(dw, dtype), first.dilation_rate)
        pw = tf.stack([op.pointwise[rep].kernel[0, 0] for op in ops])
        block = tf.einsum("kdf,kg->kdgf", pw, tf.eye(n, dtype=pw.dtype))
        h = _pointwise(h, tf.cast(tf.reshape(block, [1, 1, n * c, n * c]), dtype))
        h = batch_norm_group(h, [op.bns[rep] for op in ops], training)
    return h


def mixed_group(x_ops, edges, weights, dtype, training):
    """``sum_o psi_e phi_{e,o} o_e(x_ops)`` for the edges ``edges`` (MixedOps) reading ``x_ops``.

    ``weights``: ``(len(edges), num_ops)`` float32, the rows ``psi_e * phi_e``. Returns the
    edge-major ``(B, H, W, n*c)`` sum (eq. (2), (5) without the bypass).
    """
    n, c = len(edges), int(x_ops.shape[-1])

    def per_channel(o):  # (n*c,) edge-major copy of column o
        return tf.cast(tf.repeat(weights[:, o], c), dtype)

    r = tf.nn.relu(x_ops)  # shared by every conv op of every edge reading this state
    total = tf.tile(x_ops, [1, 1, 1, n]) * per_channel(OP_INDEX["skip_connect"])
    for name, pool in (("max_pool_3x3", tf.nn.max_pool2d), ("avg_pool_3x3", tf.nn.avg_pool2d)):
        o = OP_INDEX[name]
        pooled = tf.tile(pool(x_ops, 3, 1, "SAME"), [1, 1, 1, n])
        pooled = batch_norm_group(pooled, [edge.pool_bns[o] for edge in edges], training)
        total = total + pooled * per_channel(o)
    for name in CONV_OPS:
        o = OP_INDEX[name]
        y = conv_op_group(r, [edge.ops[o] for edge in edges], dtype, training)
        total = total + y * per_channel(o)
    return total


def fused_nodes(cell, states, phi, psi, training: bool):
    """The intermediate nodes of ``cell`` (eq. (5)) from its two preprocessed inputs ``states``.

    ``phi`` ``(num_edges, num_ops)`` and ``psi`` ``(num_edges,)`` are float32.
    """
    dtype = cell.compute_dtype
    c = cell.C // cell.K
    weights = psi[:, None] * phi  # psi_e * phi_{e,o}, float32
    readers = consumers(cell.steps)
    slots = {}  # edge -> (state i, position among the readers of i)
    mixed = {}
    edges = edge_list(cell.steps)
    states = list(states)

    def read_state(i):
        group = readers[i]
        x_ops = states[i][..., :c]  # eq. (3): M x_i, the same for every reader
        mixed[i] = mixed_group(x_ops, [cell.edges[e] for e in group],
                               tf.gather(weights, group), dtype, training)
        for k, e in enumerate(group):
            slots[e] = (i, k)

    read_state(0)
    read_state(1)
    start = 0
    for j in range(cell.steps):
        end = start + j + 2
        part = 0.0
        bypass = 0.0
        for e in range(start, end):
            i, k = slots[e]
            part = part + mixed[i][..., k * c:(k + 1) * c]
            if cell.K > 1:  # eq. (3): (1 - M) x_i passes, weighted by Psi_e (eq. (5))
                bypass = bypass + tf.cast(psi[e], dtype) * states[i][..., c:]
        node = part if cell.K == 1 else channel_shuffle(tf.concat([part, bypass], -1), cell.K)
        states.append(node)
        if j + 2 < len(readers) and readers[j + 2]:
            read_state(j + 2)
        start = end
    assert len(slots) == len(edges)
    return states[2:]
