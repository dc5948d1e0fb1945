"""The partial-channel mixed operation of one edge (eq. (1)-(3), Algorithm 2 lines 6-12)."""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer
from iac_tf.search.channel_shuffle import channel_shuffle
from iac_tf.search.checks import check_positive_int
from iac_tf.search.operations import PRIMITIVES, batch_norm, build_sublayer, make_op


def check_partial_channels(C: int, K: int) -> None:
    """Clear error unless ``C`` channels split into ``K`` equal parts (PC-DARTS' 1/K)."""
    check_positive_int("MixedOp", "C", C)
    check_positive_int("MixedOp", "K", K)
    if C % K:
        raise ValueError(f"C={C} channels are not divisible by K={K} (partial channels C/K)")


@keras.utils.register_keras_serializable(package="iac_tf")
class MixedOp(ScopedLayer):
    """Weighted sum of all candidate operations on the first C/K channels, the rest bypassing.

    ``f_PC(x) = shuffle_K(concat(sum_o phi_o * o(x[..., :C/K]), x[..., C/K:]))`` -- eq. (2)-(3):
    the mask M selects the first C/K channels (Algorithm 2 line 7), the other channels pass
    unchanged (line 11), and a channel shuffle with K groups (PC-DARTS) lets the next edge see a
    different subset. ``K=1`` is plain DARTS (eq. (2), no bypass, no shuffle). Ops are built with
    non-affine BatchNorms, and pooling ops get a non-affine BatchNorm after them, as in DARTS.

    Args:
        C: channels of the edge's input and output.
        K: partial-channel divisor (``C % K == 0``).

    Call arguments:
        inputs: ``[x, phi]``: ``x`` ``(B, H, W, C)``, ``phi`` ``(num_ops,)`` the softmax of this
            edge's alpha row (eq. (1)), computed by the caller. Returns ``(B, H, W, C)``.
    """

    def __init__(self, C: int, K: int = 4, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        check_partial_channels(C, K)
        self.C = C
        self.K = K

    def build(self, input_shape):
        x_shape = tf.TensorShape(input_shape[0])
        if x_shape[-1] != self.C:
            raise ValueError(f"{self.name}: expected {self.C} input channels, got shape {x_shape}")
        part = x_shape[:-1].concatenate([self.C // self.K])
        self.ops, self.pool_bns = [], []
        for name in PRIMITIVES:
            op = make_op(name, self.C // self.K, False, name=name, dtype=self.dtype_policy)
            build_sublayer(op, part)
            bn = None
            if "pool" in name:
                bn = batch_norm(False, name=f"{name}_bn", dtype=self.dtype_policy)
                build_sublayer(bn, part)
            self.ops.append(op)
            self.pool_bns.append(bn)
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):
        x, phi = inputs
        x = tf.cast(x, self.compute_dtype)
        phi = tf.cast(phi, self.compute_dtype)
        part = self.C // self.K
        x_ops, x_bypass = x[..., :part], x[..., part:]  # M x and (1 - M) x, eq. (3)
        mixed = 0.0
        for o, (op, bn) in enumerate(zip(self.ops, self.pool_bns)):
            y = op(x_ops, training=training)
            if bn is not None:
                y = bn(y, training=training)
            mixed = mixed + phi[o] * y  # eq. (2)
        if self.K == 1:
            return mixed
        return channel_shuffle(tf.concat([mixed, x_bypass], axis=-1), self.K)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"C": self.C, "K": self.K})
        config.pop("autocast", None)
        return config

