"""DiscreteCell: node sums of the chosen ops against NumPy, zoo shapes, parameter counts."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.genotype import DiscreteCell, Genotype
from tests.search.zoo_shapes import ZOO_LEVELS

GENOTYPE = Genotype((
    (("sep_conv_3x3", 1), ("skip_connect", 0)),
    (("dil_conv_3x3", 2), ("max_pool_3x3", 1)),
    (("avg_pool_3x3", 0), ("sep_conv_5x5", 3)),
    (("dil_conv_5x5", 4), ("skip_connect", 2)),
))


def test_node_sums_match_reference():
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(2, 6, 6, 12)).astype(np.float32)
    x1 = rng.normal(size=(2, 6, 6, 20)).astype(np.float32)
    cell = DiscreteCell(GENOTYPE, 32, C=8)
    got = cell([x0, x1], training=False).numpy()
    states = [cell.preprocess0(x0, training=False).numpy(), cell.preprocess1(x1, training=False).numpy()]
    for j, node in enumerate(GENOTYPE.edges):
        (op_a, i_a), (op_b, i_b) = node
        layer_a, layer_b = cell.node_ops[2 * j : 2 * j + 2]
        assert op_a in layer_a.name and op_b in layer_b.name
        states.append(
            layer_a(states[i_a], training=False).numpy() + layer_b(states[i_b], training=False).numpy()
        )
    want = np.concatenate(states[2:], -1) @ cell.output_conv.kernel.numpy()[0, 0] + cell.output_conv.bias.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # affine BNs in the discrete cell
    assert any("gamma" in w.name for w in cell.trainable_weights)


def test_parameter_count():
    C, cu, cs, out = 16, 64, 64, 128
    cell = DiscreteCell(GENOTYPE, out, C=C)
    cell.build([(None, 8, 8, cu), (None, 8, 8, cs)])
    bn = 4 * C  # gamma, beta, moving mean, moving variance
    pre = (cu * C + bn) + (cs * C + bn)
    ops = {
        "sep_conv_3x3": 2 * (9 * C + C * C + bn), "sep_conv_5x5": 2 * (25 * C + C * C + bn),
        "dil_conv_3x3": 9 * C + C * C + bn, "dil_conv_5x5": 25 * C + C * C + bn,
    }
    chosen = sum(ops.get(op, 0) for node in GENOTYPE.edges for op, _ in node)
    assert cell.count_params() == pre + chosen + (4 * C * out + out)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("H,cu,cs,level", ZOO_LEVELS)
def test_zoo_shapes_forward_backward(H, cu, cs, level, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        cell = DiscreteCell(GENOTYPE.to_dict(), cu + cs)
        batch = 1 if H == 128 else 2
        x0, x1 = tf.random.normal((batch, H, H, cu)), tf.random.normal((batch, H, H, cs))
        with tf.GradientTape() as tape:
            y = cell([x0, x1], training=True)
            loss = tf.reduce_mean(tf.cast(y, tf.float32) ** 2)
        grads = tape.gradient(loss, cell.trainable_weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.shape == (batch, H, H, cu + cs)
    assert y.dtype == (tf.float16 if policy == "mixed_float16" else tf.float32)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_genotype_forms_and_config():
    cell = DiscreteCell(GENOTYPE.to_json(), 24, C=8, name="iac0")
    assert cell.genotype == GENOTYPE
    config = cell.get_config()
    assert config["genotype"]["edges"][0] == [["sep_conv_3x3", 1], ["skip_connect", 0]]
    clone = DiscreteCell.from_config(config)
    assert clone.genotype == GENOTYPE and (clone.out_channels, clone.C) == (24, 8)
    with pytest.raises(TypeError, match="expected a Genotype"):
        DiscreteCell(42, 8)
    with pytest.raises(ValueError, match="expects"):
        DiscreteCell(GENOTYPE, 8)(tf.ones((1, 4, 4, 4)))
