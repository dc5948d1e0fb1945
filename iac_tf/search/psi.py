"""Edge normalisation Psi: how strongly each edge entering a node counts (eq. (4), (6)-(10)).

``psi_edge_weights(beta, mode)`` maps the beta values of the edges that enter ONE node (last axis)
to their weights Psi:

* ``"softmax"`` -- eq. (4) (PC-DARTS): ``Psi = softmax(beta)``.
* ``"tan"`` (the paper's proposal, default) -- eq. (6): ``Psi_hat = softmax(tan(beta) - max tan)``;
  eq. (7): if ``max Psi_hat <= 0.5`` then ``Psi = Psi_hat``; otherwise eq. (8)-(10): the winner
  ``i*`` gets 0.5 and the others share 0.5 in proportion to ``Psi_hat``.

Numerics: ``0.5 * Psi_hat_i / S_rest`` equals ``0.5 * softmax_{i != i*}(tan beta)_i``, which is
computed that way (a softmax over the non-winners), so it never divides 0 by 0 even where the
non-winners' ``Psi_hat`` underflow to zero near a pole of tan. Everything is float32.

Gradient facts (tested; see docs/decisions.md, "Search space"): where the cap is active the winner's own
beta gets no gradient (its Psi is the constant 0.5 and the others do not depend on it); a node
with two inputs always gets (0.5, 0.5) in tan mode, so its beta gets no gradient at all.
"""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer
from iac_tf.search.checks import check_positive_int
from iac_tf.search.topology import DEFAULT_STEPS, node_edge_slices, num_edges

EDGE_NORMS = ("tan", "softmax")
PSI_CAP = 0.5  # eq. (7)-(10)


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`EDGE_NORMS`, else a clear ``ValueError``."""
    if mode not in EDGE_NORMS:
        raise ValueError(f"edge normalisation mode must be one of {EDGE_NORMS}, got {mode!r}")
    return mode


def psi_edge_weights(beta, mode: str = "tan"):
    """Psi for the edges entering one node, from their beta values (last axis).

    Args:
        beta: float tensor/array ``(..., n)``, the node's ``n`` incoming edges on the last axis.
        mode: ``"tan"`` (eq. (6)-(10)) or ``"softmax"`` (eq. (4)).

    Returns:
        a float32 tensor shaped like ``beta``; each row sums to 1.
    """
    check_mode(mode)
    beta = tf.cast(tf.convert_to_tensor(beta), tf.float32)
    n = beta.shape[-1]
    if n is None or n < 1:
        raise ValueError(f"psi_edge_weights: beta needs a static, non-empty last axis, got {beta.shape}")
    if mode == "softmax":
        return tf.nn.softmax(beta, axis=-1)  # eq. (4)
    if n < 2:
        raise ValueError("psi_edge_weights: tan mode needs at least 2 edges per node (eq. (9))")
    t = tf.tan(beta)
    psi_hat = tf.nn.softmax(t - tf.reduce_max(t, axis=-1, keepdims=True), axis=-1)  # eq. (6)
    winner = tf.one_hot(tf.argmax(psi_hat, axis=-1), n, on_value=True, off_value=False)  # i*
    capped = tf.reduce_max(psi_hat, axis=-1, keepdims=True) > PSI_CAP  # eq. (7) vs (8)
    # eq. (9)-(10): 0.5 * Psi_hat_i / S_rest == 0.5 * softmax over the non-winners of tan(beta).
    t_rest = tf.where(winner, tf.constant(-float("inf"), tf.float32), t)
    rest = tf.nn.softmax(t_rest - tf.stop_gradient(tf.reduce_max(t_rest, -1, keepdims=True)), -1)
    rescaled = tf.where(winner, tf.constant(PSI_CAP, tf.float32), PSI_CAP * rest)  # eq. (8), (10)
    return tf.where(capped, rescaled, psi_hat)


def psi_per_node(beta, mode: str = "tan", steps: int = DEFAULT_STEPS):
    """Psi of every edge of a cell: :func:`psi_edge_weights` node by node (eq. (4) / (6)-(10)).

    The one place that walks the nodes: used by :class:`PsiEdgeNorm` (the cells), the search
    logging and the genotype rule.

    Args:
        beta: ``(num_edges(steps),)`` tensor/array in the edge order of :mod:`~iac_tf.search.topology`.
        mode: ``"tan"`` or ``"softmax"``.
        steps: intermediate nodes.

    Returns:
        float32 tensor ``(num_edges,)``; the slice of each node sums to 1.
    """
    check_mode(mode)
    beta = tf.cast(tf.convert_to_tensor(beta), tf.float32)
    n = num_edges(steps)
    if beta.shape.rank != 1 or beta.shape[0] != n:
        raise ValueError(f"psi_per_node: beta must have shape ({n},) for {steps} nodes, got {beta.shape}")
    return tf.concat([psi_edge_weights(beta[s:e], mode) for s, e in node_edge_slices(steps)], axis=0)


@keras.utils.register_keras_serializable(package="iac_tf")
class PsiEdgeNorm(ScopedLayer):
    """Psi of every edge of a cell: :func:`psi_edge_weights` applied node by node.

    Always computes in float32 (its dtype is forced to float32 under any mixed-precision policy).

    Args:
        mode: ``"tan"`` (eq. (6)-(10), default) or ``"softmax"`` (eq. (4)).
        steps: number of intermediate nodes (4: 14 edges).

    Call arguments:
        inputs: beta, shape ``(num_edges,)`` in the edge order of :mod:`iac_tf.search.topology`.
        Returns Psi, float32 ``(num_edges,)``; the slice of each node sums to 1.
    """

    def __init__(self, mode: str = "tan", steps: int = DEFAULT_STEPS, **kwargs):
        kwargs["dtype"] = "float32"
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.mode = check_mode(mode)
        self.steps = check_positive_int("PsiEdgeNorm", "steps", steps)
        self.num_edges = num_edges(self.steps)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):  # training: accepted, unused
        beta = tf.cast(inputs, tf.float32)
        if beta.shape.rank != 1 or beta.shape[0] != self.num_edges:
            raise ValueError(
                f"PsiEdgeNorm: beta must have shape ({self.num_edges},), got {beta.shape}"
            )
        return psi_per_node(beta, self.mode, self.steps)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([self.num_edges])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "steps": self.steps})
        config.pop("autocast", None)
        return config
