"""Candidate operations: every op preserves shape; values of the simple ops; parameter counts."""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.search import OPS, PRIMITIVES, make_op

C = 8


def _bn_params(affine):
    return (4 if affine else 2) * C  # gamma, beta (affine) + moving mean, variance


# Exact weight counts (incl. BN moving statistics) for C -> C channels.
EXPECTED_PARAMS = {
    "none": lambda a: 0,
    "max_pool_3x3": lambda a: 0,
    "avg_pool_3x3": lambda a: 0,
    "skip_connect": lambda a: 0,
    "sep_conv_3x3": lambda a: 2 * (9 * C + C * C + _bn_params(a)),
    "sep_conv_5x5": lambda a: 2 * (25 * C + C * C + _bn_params(a)),
    "dil_conv_3x3": lambda a: 9 * C + C * C + _bn_params(a),
    "dil_conv_5x5": lambda a: 25 * C + C * C + _bn_params(a),
}


def test_table_order():
    assert PRIMITIVES == (
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
    )
    assert tuple(OPS) == PRIMITIVES


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_shape_and_params(name, affine):
    op = OPS[name](C, affine)
    x = tf.random.normal((2, 11, 11, C))
    y = op(x, training=True)
    assert y.shape == x.shape
    assert op.count_params() == EXPECTED_PARAMS[name](affine)
    gammas = [w for w in op.weights if "gamma" in w.name]
    assert bool(gammas) == (affine and "conv" in name)


def test_simple_ops_values():
    x = np.random.default_rng(0).normal(size=(1, 5, 6, C)).astype(np.float32)
    np.testing.assert_array_equal(OPS["none"](C, False)(x).numpy(), 0.0)
    np.testing.assert_array_equal(OPS["skip_connect"](C, False)(x).numpy(), x)
    mx = OPS["max_pool_3x3"](C, False)(x).numpy()
    av = OPS["avg_pool_3x3"](C, False)(x).numpy()
    for r, c in [(0, 0), (2, 3), (4, 5), (0, 3)]:
        win = x[0, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
        np.testing.assert_allclose(mx[0, r, c], win.max(axis=(0, 1)), rtol=1e-6)
        # padding excluded: the corner averages its 4 valid pixels, an edge pixel its 6
        np.testing.assert_allclose(av[0, r, c], win.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)


def _depthwise_same(x, kernel, dilation):
    k = kernel.shape[0]
    pad = dilation * (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros_like(x, dtype=np.float64)
    H, W = x.shape[1:3]
    for a in range(k):
        for b in range(k):
            out += xp[:, a * dilation:a * dilation + H, b * dilation:b * dilation + W, :] * kernel[a, b, :, 0]
    return out


@pytest.mark.parametrize("name,dilation,repeats", [
    ("dil_conv_3x3", 2, 1), ("dil_conv_5x5", 2, 1), ("sep_conv_3x3", 1, 2), ("sep_conv_5x5", 1, 2),
])
def test_conv_ops_match_numpy(name, dilation, repeats):
    op = OPS[name](C, True)
    x = np.random.default_rng(1).normal(size=(1, 9, 9, C)).astype(np.float32)
    got = op(x, training=False).numpy()
    y = x.astype(np.float64)
    for depthwise, pointwise, bn in zip(op.depthwise, op.pointwise, op.bns):
        assert depthwise.dilation_rate == (dilation, dilation)
        y = _depthwise_same(np.maximum(y, 0), depthwise.depthwise_kernel.numpy(), dilation)
        y = y @ pointwise.kernel.numpy()[0, 0]
        y = (y - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        y = y * bn.gamma.numpy() + bn.beta.numpy()
    assert len(op.depthwise) == len(op.bns) == repeats
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-5)


def test_unknown_op():
    with pytest.raises(ValueError, match="unknown operation 'conv_7x7'"):
        make_op("conv_7x7", C, True)


@pytest.mark.parametrize("upsampling", [None, (2, 3)])
def test_relu_conv_bn_with_upsampling_matches_numpy(upsampling):
    """The cell's input preprocessing (DARTS' ReLUConvBN; not a paper equation) with
    ``upsampling``: ReLU and 1x1 conv on the low-resolution input, nearest replication, then the
    training-mode BN over the replicated tensor (batch statistics; moving statistics updated
    with momentum and the unbiased variance of the replicated tensor's B*H*W values)."""
    from iac_tf.search.operations import BN_EPSILON, BN_MOMENTUM, ReLUConvBN

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    layer = ReLUConvBN(C, affine=False)
    layer.build(x.shape)
    w = rng.normal(size=(1, 1, 5, C)).astype(np.float32)
    layer.conv.kernel.assign(w)
    y = layer(tf.constant(x), training=True, upsampling=upsampling).numpy()

    z = np.maximum(x, 0.0) @ w[0, 0]  # (B, h, w, C)
    if upsampling is not None:
        z = np.repeat(np.repeat(z, upsampling[0], axis=1), upsampling[1], axis=2)
    mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (z - mean) / np.sqrt(var + BN_EPSILON), rtol=1e-4, atol=1e-4)
    n = z.shape[0] * z.shape[1] * z.shape[2]
    np.testing.assert_allclose(layer.bn.moving_mean.numpy(), (1 - BN_MOMENTUM) * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bn.moving_variance.numpy(),
                               BN_MOMENTUM + (1 - BN_MOMENTUM) * var * n / (n - 1), rtol=1e-5, atol=1e-6)
