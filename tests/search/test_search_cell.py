"""SearchCell: node sums (eq. (5)) against NumPy, zoo shapes fwd+bwd in float32 / mixed_float16."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search import PRIMITIVES, ArchitectureParameters, SearchCell
from tests.search.reference import node_slices, psi_all, softmax
from tests.search.zoo_shapes import ZOO_LEVELS


def test_node_sums_match_reference(edge_norm="tan"):  # softmax mode: PsiEdgeNorm tests
    rng = np.random.default_rng(7)
    x0 = rng.normal(size=(2, 6, 6, 12)).astype(np.float32)
    x1 = rng.normal(size=(2, 6, 6, 20)).astype(np.float32)
    alpha = rng.normal(size=(14, 8)).astype(np.float32)
    beta = rng.uniform(-1.4, 1.4, size=14).astype(np.float32)
    cell = SearchCell(32, C=8, K=2, edge_norm=edge_norm)
    got = cell([x0, x1, alpha, beta], training=False).numpy()

    phi, psi = softmax(alpha), psi_all(beta, edge_norm)  # eq. (1); eq. (4) / (6)-(10)
    states = [cell.preprocess0(x0, training=False).numpy(), cell.preprocess1(x1, training=False).numpy()]
    for j, (start, _end) in enumerate(node_slices(4)):
        node = 0.0
        for i in range(j + 2):  # node j takes every earlier state, edge start + i
            f = cell.edges[start + i]([states[i], phi[start + i].astype(np.float32)], training=False)
            node = node + psi[start + i] * f.numpy().astype(np.float64)  # eq. (5)
        states.append(node)
    kernel, bias = cell.output_conv.kernel.numpy()[0, 0], cell.output_conv.bias.numpy()
    want = np.concatenate(states[2:], axis=-1) @ kernel + bias
    assert got.shape == (2, 6, 6, 32)
    names = [e.name for e in cell.edges]  # DARTS edge order, node by node
    assert names[0] == "edge0_x0_to_node0" and names[4] == "edge4_x2_to_node1"
    assert names[5] == "edge5_x0_to_node2" and names[13] == "edge13_x4_to_node3"
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _fwd_bwd(H, cu, cs, batch):
    arch = ArchitectureParameters()
    cell = SearchCell(cu + cs, C=16, K=4)
    x0 = tf.random.normal((batch, H, H, cu), seed=1)
    x1 = tf.random.normal((batch, H, H, cs), seed=2)
    with tf.GradientTape() as tape:
        alpha, beta = arch(x0)
        y = cell([x0, x1, alpha, beta], training=True)
        loss = tf.reduce_mean(tf.cast(y, tf.float32) ** 2)
    grads = tape.gradient(loss, [arch.alpha, arch.beta] + cell.trainable_weights)
    return cell, y, grads


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("H,cu,cs,level", ZOO_LEVELS)
def test_zoo_shapes_forward_backward(H, cu, cs, level, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        cell, y, grads = _fwd_bwd(H, cu, cs, batch=1 if H == 128 else 2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.shape == (1 if H == 128 else 2, H, H, cu + cs)
    assert y.dtype == (tf.float16 if policy == "mixed_float16" else tf.float32)
    assert all(w.dtype == tf.float32 for w in cell.trainable_weights)  # float32 master weights
    g_alpha, g_beta = grads[0].numpy(), grads[1].numpy()
    assert g_alpha.dtype == np.float32 and np.isfinite(g_alpha).all()
    assert np.abs(g_alpha).sum() > 0
    assert np.isfinite(g_beta).all()
    assert np.abs(g_beta[2:]).sum() > 0
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads[2:])


def test_mixed_precision_keeps_phi_and_psi_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        cell = SearchCell(16, C=8, K=2, steps=2)
        cell([tf.ones((1, 4, 4, 8)), tf.ones((1, 4, 4, 8)), tf.ones((5, 8)), tf.ones(5)])
        assert cell.compute_dtype == "float16" and cell.psi_norm.compute_dtype == "float32"
        # beta near a pole of tan (tan ~ 1e4): Psi is computed in float32 and stays finite
        beta = np.full(5, 1.0, np.float32)
        beta[3] = np.float32(np.pi / 2 - 1e-4)
        y = cell([tf.ones((1, 4, 4, 8)), tf.ones((1, 4, 4, 8)), tf.ones((5, 8)), beta])
        assert np.isfinite(y.numpy()).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_errors():
    with pytest.raises(ValueError, match="not divisible by K=3"):
        SearchCell(32, C=16, K=3)
    with pytest.raises(ValueError, match="edge normalisation"):
        SearchCell(32, edge_norm="tanh")
    a, b = tf.ones((14, 8)), tf.ones(14)
    with pytest.raises(ValueError, match="differ in height"):
        SearchCell(8)([tf.ones((1, 4, 4, 4)), tf.ones((1, 8, 4, 4)), a, b])
    with pytest.raises(ValueError, match=r"alpha must be \(14, 8\)"):
        SearchCell(8)([tf.ones((1, 4, 4, 4)), tf.ones((1, 4, 4, 4)), tf.ones((14, 7)), b])
    with pytest.raises(ValueError, match="expects"):
        SearchCell(8)([tf.ones((1, 4, 4, 4)), tf.ones((1, 4, 4, 4))])


def test_config_round_trip():
    cell = SearchCell(96, C=8, K=2, edge_norm="softmax", steps=4, name="iac3")
    clone = SearchCell.from_config(cell.get_config())
    assert (clone.out_channels, clone.C, clone.K, clone.edge_norm, clone.steps, clone.name) == (
        96, 8, 2, "softmax", 4, "iac3")
    assert len(PRIMITIVES) == 8


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("shape0,shape1", [((16, 16, 8), (16, 16, 4)),
                                           ((None, None, 8), (16, 16, 4)),
                                           ((None, None, 8), (None, None, 4))])
def test_functional_construction_skips_the_scratch_trace(shape0, shape1, policy):
    """On symbolic inputs Keras calls the cell only to read the output signature; the cell
    answers without tracing its body, with the shape and dtype a real trace gives."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        up, skip = keras.Input(shape0), keras.Input(shape1)
        arch = ArchitectureParameters()
        cell = SearchCell(12, C=8, K=2, name="probe_cell")
        y = cell([up, skip, *arch(up)])
        assert cell.built and len(cell.weights) > 100  # the sublayers exist without the trace

        @tf.function
        def traced(a, b):
            return cell([a, b, *arch(a)], training=True)

        real = traced.get_concrete_function(
            tf.TensorSpec((None, *shape0)), tf.TensorSpec((None, *shape1))).structured_outputs
        assert y.shape.as_list() == real.shape.as_list()
        assert y.dtype == real.dtype == tf.as_dtype(cell.compute_dtype)
        # the scratch call leaves Keras a few ops, not the cell's ~1000
        graph = tf.__internal__.FuncGraph("probe_cell_scratch_graph")
        with graph.as_default():
            cell([tf.compat.v1.placeholder(tf.float32, (None, *shape0)),
                  tf.compat.v1.placeholder(tf.float32, (None, *shape1)),
                  tf.zeros(arch.alpha.shape), tf.zeros(arch.beta.shape)])
        assert len(graph.get_operations()) < 30
        model = keras.Model([up, skip], y)
        data = [np.ones((2, 16, 16, 8), np.float32), np.ones((2, 16, 16, 4), np.float32)]
        assert model(data).shape == (2, 16, 16, 12)
    finally:
        keras.mixed_precision.set_global_policy("float32")
