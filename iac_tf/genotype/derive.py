"""Discretisation (Section III-B.3): learned alpha and beta -> the discrete cell's genotype."""

from __future__ import annotations

import numpy as np

from iac_tf.genotype.genotype import EDGES_PER_NODE, Genotype
from iac_tf.primitives import PRIMITIVES
from iac_tf.search.psi import psi_per_node
from iac_tf.search.topology import node_edge_slices, steps_for_num_edges

NONE_INDEX = PRIMITIVES.index("none")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def edge_strengths(alpha, beta, edge_norm: str = "tan") -> np.ndarray:
    """``W[e, o] = Psi_e * softmax(alpha_e)_o``: each edge's op weights scaled by its Psi.

    Psi is computed per node by :func:`iac_tf.search.psi_per_node` (the same function the
    search used), so the genotype reflects the edge weights the search actually applied.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if alpha.ndim != 2 or alpha.shape[1] != len(PRIMITIVES):
        raise ValueError(f"derive_genotype: alpha must be (num_edges, {len(PRIMITIVES)}), got {alpha.shape}")
    if beta.shape != (alpha.shape[0],):
        raise ValueError(f"derive_genotype: beta must be ({alpha.shape[0]},), got {beta.shape}")
    if not (np.isfinite(alpha).all() and np.isfinite(beta).all()):
        raise ValueError("derive_genotype: alpha and beta must be finite")
    steps = steps_for_num_edges(alpha.shape[0])
    phi = _softmax(alpha)  # eq. (1)
    psi = np.asarray(psi_per_node(beta, edge_norm, steps), np.float64)  # eq. (4) / (6)-(10)
    return phi * psi[:, None]


def derive_genotype(alpha, beta, edge_norm: str = "tan") -> Genotype:
    """The PC-DARTS rule: per node, the 2 edges with the largest non-``none`` weight, argmax op.

    Args:
        alpha: ``(num_edges, 8)`` array or tensor.
        beta: ``(num_edges,)`` array or tensor.
        edge_norm: ``"tan"`` or ``"softmax"``, as used in the search.

    Returns:
        a :class:`Genotype`; each node's two edges are listed strongest first. Ties go to the
        lower input index / the earlier operation in ``PRIMITIVES`` (stable, as in PC-DARTS).
    """
    weights = edge_strengths(alpha, beta, edge_norm)
    keep = [o for o in range(len(PRIMITIVES)) if o != NONE_INDEX]
    nodes = []
    for start, end in node_edge_slices(steps_for_num_edges(weights.shape[0])):
        W = weights[start:end][:, keep]
        ranked = sorted(range(end - start), key=lambda i: -W[i].max())[:EDGES_PER_NODE]
        nodes.append(tuple((PRIMITIVES[keep[int(np.argmax(W[i]))]], i) for i in ranked))
    return Genotype(tuple(nodes))
