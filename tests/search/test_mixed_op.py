"""Partial-channel MixedOp (eq. (1)-(3)) against the NumPy reference."""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.search import PRIMITIVES, MixedOp
from tests.search.reference import mixed_op as mixed_op_np
from tests.search.reference import softmax


def _op_outputs(layer, x_part):
    outs = []
    for op, bn in zip(layer.ops, layer.pool_bns):
        y = op(x_part, training=False)
        outs.append((bn(y, training=False) if bn is not None else y).numpy().astype(np.float64))
    return outs


@pytest.mark.parametrize("C,K", [(16, 4), (16, 1), (12, 3), (8, 2)])
def test_matches_reference(C, K):
    rng = np.random.default_rng(C + K)
    x = rng.normal(size=(2, 7, 7, C)).astype(np.float32)
    alpha_row = rng.normal(size=len(PRIMITIVES))
    phi = softmax(alpha_row)  # eq. (1)
    layer = MixedOp(C, K)
    got = layer([x, tf.constant(phi, tf.float32)], training=False).numpy()
    want = mixed_op_np(x.astype(np.float64), phi, _op_outputs(layer, x[..., : C // K]), K)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert all(op.count_params() == 0 or "conv" in op.name for op in layer.ops)
    # search BNs carry no affine parameters
    assert not [w for w in layer.weights if "gamma" in w.name or "beta" in w.name]


def test_bypassed_channels_pass_unchanged():
    C, K = 16, 4
    x = np.random.default_rng(0).normal(size=(1, 5, 5, C)).astype(np.float32)
    y = MixedOp(C, K)([x, tf.nn.softmax(tf.ones(8))], training=True).numpy()
    # output channel c*K + g holds input channel g*(C/K) + c; groups g >= 1 bypassed the ops
    per = C // K
    for g in range(1, K):
        for c in range(per):
            np.testing.assert_array_equal(y[..., c * K + g], x[..., g * per + c])


def test_one_hot_phi_selects_one_op():
    C, K = 8, 2
    x = np.random.default_rng(3).normal(size=(1, 6, 6, C)).astype(np.float32)
    layer = MixedOp(C, K)
    phi = np.zeros(8, np.float32)
    phi[PRIMITIVES.index("skip_connect")] = 1.0
    np.testing.assert_allclose(layer([x, phi]).numpy(), x[..., [0, 4, 1, 5, 2, 6, 3, 7]], atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="not divisible by K=3"):
        MixedOp(16, 3)
    with pytest.raises(ValueError, match="expected 16 input channels"):
        MixedOp(16, 4)([tf.zeros((1, 4, 4, 8)), tf.ones(8) / 8])


def test_config_round_trip():
    layer = MixedOp(16, 2, name="e0")
    clone = MixedOp.from_config(layer.get_config())
    assert (clone.C, clone.K, clone.name) == (16, 2, "e0")
