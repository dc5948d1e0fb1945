"""The hand-written gradients of iac_tf.search.kernels against TensorFlow's own."""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.search.kernels import _window_counts, avg_pool_3x3, depthwise_conv


def _grads(fn, inputs, upstream):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = fn(*inputs)
    return y, tape.gradient(y, inputs, output_gradients=upstream)


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 1, 4, 2), (1, 2, 1, 1)])
def test_window_counts_match_a_direct_count(shape):
    counts = _window_counts(tf.zeros(shape))[0, :, :, 0].numpy()
    h, w = shape[1:3]
    ref = np.array([[sum(0 <= a < h and 0 <= b < w for a in (i - 1, i, i + 1) for b in (j - 1, j, j + 1))
                     for j in range(w)] for i in range(h)])
    np.testing.assert_array_equal(counts, ref)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("float16", 2e-3)])
def test_avg_pool_gradient_matches_tensorflow(dtype, tol):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 9, 6, 3)), dtype)
    g = tf.constant(rng.normal(size=(2, 9, 6, 3)), dtype)
    y, (dx,) = _grads(avg_pool_3x3, [x], g)
    y_ref, (dx_ref,) = _grads(lambda t: tf.nn.avg_pool2d(t, 3, 1, "SAME"), [x], g)
    np.testing.assert_array_equal(y.numpy(), y_ref.numpy())
    np.testing.assert_allclose(dx.numpy().astype(np.float32), dx_ref.numpy().astype(np.float32),
                               rtol=tol, atol=tol)


def test_avg_pool_gradient_with_unknown_spatial_shape():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 8, 5, 2)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 8, 5, 2)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2])] * 2)
    def grad(x, g):
        return _grads(avg_pool_3x3, [x], g)[1][0]

    ref = _grads(lambda t: tf.nn.avg_pool2d(t, 3, 1, "SAME"), [x], g)[1][0]
    np.testing.assert_allclose(grad(x, g).numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)


def test_avg_pool_gradient_against_numpy():
    """dL/dx for L = sum(g * avgpool(x)), written out window by window."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, 5, 1)).astype(np.float32)
    g = rng.normal(size=(1, 4, 5, 1)).astype(np.float32)
    _, (dx,) = _grads(avg_pool_3x3, [tf.constant(x)], tf.constant(g))
    ref = np.zeros_like(x)
    for i in range(4):
        for j in range(5):
            win = [(a, b) for a in (i - 1, i, i + 1) for b in (j - 1, j, j + 1) if 0 <= a < 4 and 0 <= b < 5]
            for a, b in win:
                ref[0, a, b, 0] += g[0, i, j, 0] / len(win)
    np.testing.assert_allclose(dx.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,c,m", [(3, 4, 4), (5, 4, 3), (3, 6, 1), (5, 2, 1)])
def test_depthwise_gradients_match_tensorflow(k, c, m):
    rng = np.random.default_rng(k * 100 + c * 10 + m)
    x = tf.constant(rng.normal(size=(2, 9, 7, c)), tf.float32)
    w = tf.constant(rng.normal(size=(k, k, c, m)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 9, 7, c * m)), tf.float32)
    y, (dx, dw) = _grads(depthwise_conv, [x, w], g)
    ref = lambda a, b: tf.nn.depthwise_conv2d(a, b, [1, 1, 1, 1], "SAME")  # noqa: E731
    y_ref, (dx_ref, dw_ref) = _grads(ref, [x, w], g)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.numpy(), dx_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw.numpy(), dw_ref.numpy(), rtol=1e-5, atol=1e-4)


def test_depthwise_input_gradient_numerically():
    """Central differences of the float64 loss, independent of any TensorFlow gradient."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 5, 4, 2))
    w = rng.normal(size=(3, 3, 2, 2))
    g = rng.normal(size=(1, 5, 4, 4))
    loss = lambda a: float(tf.reduce_sum(depthwise_conv(tf.constant(a), tf.constant(w)) * g))  # noqa: E731
    _, (dx,) = _grads(lambda a: depthwise_conv(a, tf.constant(w)), [tf.constant(x)], tf.constant(g))
    eps, num = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        num[idx] = (loss(x + d) - loss(x - d)) / (2 * eps)
    np.testing.assert_allclose(dx.numpy(), num, rtol=1e-6, atol=1e-7)


def test_dilated_depthwise_keeps_tensorflows_gradient():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(1, 8, 8, 2)), tf.float32)
    w = tf.constant(rng.normal(size=(3, 3, 2, 1)), tf.float32)
    g = tf.constant(rng.normal(size=(1, 8, 8, 2)), tf.float32)
    _, got = _grads(lambda a, b: depthwise_conv(a, b, 2), [x, w], g)
    _, ref = _grads(lambda a, b: tf.nn.depthwise_conv2d(a, b, [1, 1, 1, 1], "SAME", dilations=[2, 2]), [x, w], g)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,c", [(4, 4), (3, 2), (1, 5)])
def test_edge_weighted_gradients_match_the_broadcast(n, c):
    from iac_tf.search.kernels import edge_weighted

    rng = np.random.default_rng(10 * n + c)
    x = tf.constant(rng.normal(size=(2, 6, 5, c)), tf.float32)
    w = tf.constant(rng.normal(size=(n,)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 6, 5, n, c)), tf.float32)
    y, (dx, dw) = _grads(edge_weighted, [x, w], g)
    y_ref, (dx_ref, dw_ref) = _grads(lambda a, b: tf.expand_dims(a, -2) * tf.reshape(b, [-1, 1]), [x, w], g)
    np.testing.assert_array_equal(y.numpy(), y_ref.numpy())
    np.testing.assert_allclose(dx.numpy(), dx_ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw.numpy(), dw_ref.numpy(), rtol=1e-5, atol=1e-5)
    # against NumPy: dL/dw_k = sum g[..., k, :] * x, dL/dx = sum_k w_k g[..., k, :]
    np.testing.assert_allclose(dw.numpy(), np.einsum("bhwkc,bhwc->k", g.numpy(), x.numpy()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.numpy(), np.einsum("bhwkc,k->bhwc", g.numpy(), w.numpy()), rtol=1e-5, atol=1e-6)


def test_edge_weighted_unknown_spatial_shape_and_float16():
    from iac_tf.search.kernels import edge_weighted

    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 4, 3, 2)), tf.float32)
    w = tf.constant(rng.normal(size=(3,)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 4, 3, 3, 2)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2]), tf.TensorSpec([3]),
                                  tf.TensorSpec([None, None, None, 3, 2])])
    def grads(x, w, g):
        return _grads(edge_weighted, [x, w], g)[1]

    dx, dw = grads(x, w, g)
    np.testing.assert_allclose(dw.numpy(), np.einsum("bhwkc,bhwc->k", g.numpy(), x.numpy()), rtol=1e-5, atol=1e-5)
    assert dx.shape == x.shape
    y16 = edge_weighted(tf.cast(x, tf.float16), tf.cast(w, tf.float16))
    assert y16.dtype == tf.float16 and y16.shape == (2, 4, 3, 3, 2)
