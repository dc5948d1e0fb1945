"""Channel shuffle (ShuffleNet; used by PC-DARTS after each partial-channel mixed op).

For ``groups = K`` and ``C`` channels (``C % K == 0``) the channel axis is viewed as ``(K, C/K)``,
transposed to ``(C/K, K)`` and flattened, so output channel ``c * K + g`` is input channel
``g * (C/K) + c``. After a :class:`~iac_tf.search.MixedOp` this interleaves the ``C/K`` channels
that went through the operations with the ``(K-1) C/K`` that bypassed them, so the next edge's
first ``C/K`` channels (the ones it searches on) are a different subset.
"""

from __future__ import annotations

from iac_tf._keras import tf
from iac_tf.search.checks import check_positive_int
from iac_tf.search.kernels import channels_shape, constant


def channel_shuffle(x, groups: int):
    """Shuffle the last (channel) axis of an NHWC tensor ``x`` in ``groups`` groups.

    Args:
        x: tensor ``(B, H, W, C)``; ``C`` must be static and divisible by ``groups``.
        groups: number of groups ``K`` (1 returns ``x`` unchanged).

    Returns:
        a tensor of the same shape and dtype.
    """
    check_positive_int("channel_shuffle", "groups", groups)
    channels = x.shape[-1]
    if channels is None:
        raise ValueError("channel_shuffle: the channel axis must have a static size")
    if channels % groups:
        raise ValueError(
            f"channel_shuffle: {channels} channels are not divisible into {groups} groups"
        )
    if groups == 1:
        return x
    # constant shapes where H and W are static (fewer traced ops), else computed
    grouped = tf.reshape(x, channels_shape(x, groups, channels // groups))
    rank = len(x.shape)
    perm = constant(list(range(rank - 1)) + [rank, rank - 1])
    return tf.reshape(tf.transpose(grouped, perm), channels_shape(x, channels))
