"""derive_genotype: the PC-DARTS rule against a NumPy reference, hand-made cap cases, ties.

Covers: iac_tf/genotype/__init__.py
"""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.genotype import Genotype, derive_genotype
from iac_tf.search import PRIMITIVES
from tests.search.reference import node_slices, psi_all, softmax

OP = {name: k for k, name in enumerate(PRIMITIVES)}


def derive_reference(alpha, psi):
    """PC-DARTS ``_parse``: W = softmax(alpha) * Psi; 2 strongest edges by non-none max; argmax op."""
    W = softmax(alpha) * psi[:, None]
    nodes = []
    for j, (start, _end) in enumerate(node_slices(len(alpha) and 4)):
        best = []
        for i in range(j + 2):
            row = W[start + i]
            k_best = max((k for k in range(8) if k != OP["none"]), key=lambda k: (row[k], -k))
            best.append((row[k_best], -i, PRIMITIVES[k_best], i))
        best.sort(reverse=True)
        nodes.append(tuple((op, i) for _, _, op, i in best[:2]))
    return nodes


@pytest.mark.parametrize("mode", ["tan", "softmax"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference(mode, seed):
    rng = np.random.default_rng(seed)
    alpha = rng.normal(size=(14, 8))
    beta = rng.uniform(-1.5, 1.5, size=14)
    got = derive_genotype(alpha, beta, edge_norm=mode)
    psi = psi_all(beta.astype(np.float32), mode)
    assert [list(n) for n in got.edges] == [list(n) for n in derive_reference(alpha, psi)]


def _cap_case():
    # node 1 (edges 2, 3, 4 from input0, input1, node0), with tan(beta) = (3, 0.5, 0):
    # Psi_hat = (0.883, 0.072, 0.044) is capped to (0.5, 0.311, 0.189) (eq. (8)-(10)).
    alpha = np.zeros((14, 8))
    beta = np.zeros(14)
    beta[2:5] = np.arctan([3.0, 0.5, 0.0])
    alpha[3, OP["sep_conv_3x3"]] = 5.0  # peaked: max non-none weight 0.955
    alpha[4, OP["dil_conv_3x3"]] = 4.0  # peaked: 0.886; edge 2 stays uniform: 0.125
    return alpha, beta


def test_tan_cap_changes_which_edges_win():
    alpha, beta = _cap_case()
    node1 = derive_genotype(alpha, beta, "tan").edges[1]
    # capped W = (0.0625, 0.297, 0.167): input1 and node0 win
    assert node1 == (("sep_conv_3x3", 1), ("dil_conv_3x3", 2))
    # without the cap (Psi_hat of eq. (6) alone) the dominant input0 edge would have won:
    t = np.tan(beta[2:5])
    psi_hat = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
    W = softmax(alpha[2:5]) * psi_hat[:, None]
    uncapped = np.argsort([-W[i][1:].max() for i in range(3)], kind="stable")[:2]
    assert list(uncapped) == [0, 1]


def test_ties_break_to_lower_index_and_earlier_op():
    g = derive_genotype(np.ones((14, 8)), np.ones(14))  # the paper's initialisation
    assert g.edges == tuple((("max_pool_3x3", 0), ("max_pool_3x3", 1)) for _ in range(4))


def test_none_is_never_chosen_and_tensors_accepted():
    alpha = np.zeros((14, 8), np.float32)
    alpha[:, OP["none"]] = 10.0
    alpha[:, OP["skip_connect"]] = 1.0
    g = derive_genotype(tf.constant(alpha), tf.constant(np.zeros(14, np.float32)))
    assert all(op == "skip_connect" for node in g.edges for op, _ in node)
    assert isinstance(g, Genotype)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"alpha must be \(num_edges, 8\)"):
        derive_genotype(np.ones((14, 7)), np.ones(14))
    with pytest.raises(ValueError, match=r"beta must be \(14,\)"):
        derive_genotype(np.ones((14, 8)), np.ones(13))
    with pytest.raises(ValueError, match="does not match any cell"):
        derive_genotype(np.ones((13, 8)), np.ones(13))
    with pytest.raises(ValueError, match="finite"):
        derive_genotype(np.full((14, 8), np.nan), np.ones(14))
    with pytest.raises(ValueError, match="edge normalisation"):
        derive_genotype(np.ones((14, 8)), np.ones(14), edge_norm="sigmoid")
