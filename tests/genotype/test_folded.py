"""The discrete cell's inference path with its BatchNorms folded (``iac_tf.genotype.folded``).

No paper equation: folding is an implementation of the same function. The references are NumPy
(``s = gamma / sqrt(var + eps)``, ``t = beta - mean * s``; a dilated kernel as the kernel with
``d - 1`` zeros inserted between its taps), TensorFlow's own dilated depthwise convolution, and
the Keras layers themselves in inference (``op(x, training=False)``), with random BN statistics.
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.genotype.folded import batch_norm_affine, dense_dilated_kernel, folded_op, folded_preprocess
from iac_tf.search.operations import PRIMITIVES, ReLUConvBN, build_sublayer, make_op

C = 6


def _randomise_batch_norms(layer, rng, variance=(0.5, 2.0)):
    """Random gamma, beta, moving mean and (positive) moving variance in every BN of ``layer``."""
    count = 0
    for v in layer.weights:
        name = v.name.split("/")[-1]
        if name.startswith("gamma"):
            v.assign(rng.uniform(0.5, 1.5, v.shape))
        elif name.startswith("beta"):
            v.assign(rng.normal(0.0, 0.5, v.shape))
        elif name.startswith("moving_mean"):
            v.assign(rng.normal(0.0, 0.5, v.shape))
        elif name.startswith("moving_variance"):
            v.assign(rng.uniform(*variance, v.shape))
        else:
            continue
        count += 1
    return count


def _x(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float32)


def _bn(center=True, scale=True, fused=None, epsilon=1e-5, channels=C):
    bn = keras.layers.BatchNormalization(center=center, scale=scale, fused=fused, epsilon=epsilon)
    bn.build((None, 5, 5, channels))
    return bn


@pytest.mark.parametrize("center,scale", [(True, True), (False, False), (True, False), (False, True)])
def test_batch_norm_affine_against_numpy(center, scale):
    bn = _bn(center, scale)
    rng = np.random.default_rng(3)
    assert _randomise_batch_norms(bn, rng) == 2 + center + scale
    eps = bn.epsilon  # variances near 1: the fused kernel's epsilon question is the next test's
    gamma = bn.gamma.numpy() if scale else np.ones(C)
    beta = bn.beta.numpy() if center else np.zeros(C)
    want_s = gamma / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + eps)
    want_t = beta - bn.moving_mean.numpy() * want_s
    s, t = batch_norm_affine(bn)
    assert s.dtype == tf.float32 and t.dtype == tf.float32
    np.testing.assert_allclose(s.numpy(), want_s, rtol=1e-6)
    np.testing.assert_allclose(t.numpy(), want_t, rtol=1e-6, atol=1e-6)
    x = _x((2, 5, 5, C))
    np.testing.assert_allclose((s * x + t).numpy(), bn(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fused", [None, False])
def test_batch_norm_affine_uses_the_epsilon_keras_runs(fused):
    """With variances near epsilon, 1e-5 (the cell BNs' epsilon) and 1.001e-5 (the least
    epsilon older TensorFlow's fused kernel accepted) give outputs further apart than the
    tolerance; the affine map must match the layer, fused kernel or not."""
    bn = _bn(fused=fused)
    assert bn.fused is (fused is None)  # 4D input: Keras picks the fused kernel by default
    _randomise_batch_norms(bn, np.random.default_rng(4), variance=(1e-6, 1e-5))
    x = _x((2, 5, 5, C), seed=1)
    want = bn(x, training=False).numpy()
    candidates = []
    for eps in (bn.epsilon, 1.001e-5):
        s = bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + eps)
        candidates.append(s * x.numpy() + bn.beta.numpy() - bn.moving_mean.numpy() * s)
    # the check below can tell the two epsilons apart
    assert not np.allclose(candidates[0], candidates[1], rtol=1e-5, atol=1e-5)
    s, t = batch_norm_affine(bn)
    np.testing.assert_allclose((s * x + t).numpy(), want, rtol=1e-5, atol=1e-5)


def _numpy_dilated(kernel, d):
    k = kernel.shape[0]
    out = np.zeros(((k - 1) * d + 1, (k - 1) * d + 1) + kernel.shape[2:], kernel.dtype)
    out[::d, ::d] = kernel
    return out


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_dense_dilated_kernel_against_numpy_and_dilated_convolution(k, d):
    rng = np.random.default_rng(k * 10 + d)
    kernel = rng.normal(size=(k, k, C, 1)).astype(np.float32)
    dense = dense_dilated_kernel(tf.constant(kernel), d)
    assert dense.shape == ((k - 1) * d + 1, (k - 1) * d + 1, C, 1)
    np.testing.assert_array_equal(dense.numpy(), _numpy_dilated(kernel, d))
    x = _x((2, 11, 11, C), seed=d)
    got = tf.nn.depthwise_conv2d(x, dense, [1, 1, 1, 1], "SAME")
    want = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME", dilations=[d, d])
    assert got.shape == want.shape == x.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op_name", PRIMITIVES)
def test_folded_op_equals_the_keras_op_in_inference(op_name):
    keras.utils.set_random_seed(5)
    op = build_sublayer(make_op(op_name, C, True, name=f"op_{op_name}"), (None, 9, 9, C))
    n_bn = _randomise_batch_norms(op, np.random.default_rng(6))
    assert n_bn == {"sep_conv_3x3": 8, "sep_conv_5x5": 8, "dil_conv_3x3": 4, "dil_conv_5x5": 4}.get(op_name, 0)
    x = _x((2, 9, 9, C), seed=7)
    want = op(x, training=False).numpy()
    got = folded_op(x, op).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if n_bn:  # the random statistics matter: training mode (batch statistics) differs
        assert not np.allclose(op(x, training=True).numpy(), want, atol=1e-3)


def test_folded_op_refuses_an_unknown_layer():
    with pytest.raises(TypeError, match="no folded inference path"):
        folded_op(_x((1, 4, 4, C)), keras.layers.Dense(3))


@pytest.mark.parametrize("upsampling", [None, (2, 2)])
def test_folded_preprocess_equals_relu_conv_bn(upsampling):
    keras.utils.set_random_seed(8)
    layer = build_sublayer(ReLUConvBN(C, affine=True, name="pre"), (None, 4, 4, 5))
    assert _randomise_batch_norms(layer, np.random.default_rng(9)) == 4
    x = _x((2, 4, 4, 5), seed=10)
    want = layer(x, training=False, upsampling=upsampling).numpy()
    got = folded_preprocess(x, layer, upsampling).numpy()
    assert got.shape == ((2, 8, 8, C) if upsampling else (2, 4, 4, C))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if upsampling:  # nearest: each low-resolution pixel fills a 2 x 2 block
        np.testing.assert_array_equal(got[:, ::2, ::2], got[:, 1::2, 1::2])
