"""The hand-written gradients of iac_tf.search.kernels against TensorFlow's own."""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.search import kernels
from iac_tf.search.kernels import _window_counts, avg_pool_3x3, depthwise_conv


@pytest.fixture(autouse=True)
def hand_written_depthwise(monkeypatch):
    """The tests below check the hand-written gradients, whatever form this machine would pick."""
    monkeypatch.setattr(kernels, "DEPTHWISE_FORM", "hand")


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


@pytest.mark.parametrize("dilation,k,c,m", [(1, 3, 4, 4), (1, 5, 4, 3), (1, 3, 6, 1), (1, 5, 2, 1),
                                             (2, 3, 2, 1), (2, 3, 4, 4), (2, 5, 3, 2), (3, 3, 2, 2)])
def test_depthwise_gradients_match_tensorflow(dilation, k, c, m):
    rng = np.random.default_rng(dilation * 1000 + k * 100 + c * 10 + m)
    x = tf.constant(rng.normal(size=(2, 11, 9, c)), tf.float32)
    w = tf.constant(rng.normal(size=(k, k, c, m)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 11, 9, c * m)), tf.float32)
    y, got = _grads(lambda a, b: depthwise_conv(a, b, dilation), [x, w], g)
    ref = lambda a, b: tf.nn.depthwise_conv2d(a, b, [1, 1, 1, 1], "SAME", dilations=[dilation] * 2)  # noqa: E731
    y_ref, expected = _grads(ref, [x, w], g)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0].numpy(), expected[0].numpy(), rtol=1e-5, atol=1e-5)  # input
    np.testing.assert_allclose(got[1].numpy(), expected[1].numpy(), rtol=1e-5, atol=1e-4)  # filter


@pytest.mark.parametrize("dilation", [1, 2])
def test_depthwise_input_gradient_numerically(dilation):
    """Central differences of the float64 loss, independent of any TensorFlow gradient."""
    rng = np.random.default_rng(5 + dilation)
    x = rng.normal(size=(1, 7, 6, 2))
    w = tf.constant(rng.normal(size=(3, 3, 2, 2)))
    g = rng.normal(size=(1, 7, 6, 4))
    loss = lambda a: float(tf.reduce_sum(depthwise_conv(tf.constant(a), w, dilation) * g))  # noqa: E731
    _, (dx,) = _grads(lambda a: depthwise_conv(a, w, dilation), [tf.constant(x)], tf.constant(g))
    eps, num = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        num[idx] = (loss(x + d) - loss(x - d)) / (2 * eps)
    np.testing.assert_allclose(dx.numpy(), num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dilation,k,m", [(1, 3, 2), (1, 5, 1), (2, 3, 3), (2, 5, 2)])
def test_depthwise_input_gradient_against_numpy(dilation, k, m):
    """dL/dx(q, c) = sum_j sum_t w(t, c, j) g(q - d(t - r), c*m + j), summed term by term in NumPy
    (zero outside the image, SAME padding, r = (k - 1) / 2)."""
    rng = np.random.default_rng(20 + dilation + k + m)
    h, w_, c = 6, 7, 2
    x = rng.normal(size=(1, h, w_, c)).astype(np.float32)
    w = rng.normal(size=(k, k, c, m)).astype(np.float32)
    g = rng.normal(size=(1, h, w_, c * m)).astype(np.float32)
    _, (dx,) = _grads(lambda a: depthwise_conv(a, tf.constant(w), dilation), [tf.constant(x)], tf.constant(g))
    r, ref = (k - 1) // 2, np.zeros_like(x, dtype=np.float64)
    for i, j, ch, mi, ti, tj in np.ndindex(h, w_, c, m, k, k):
        p, q = i - dilation * (ti - r), j - dilation * (tj - r)
        if 0 <= p < h and 0 <= q < w_:
            ref[0, i, j, ch] += w[ti, tj, ch, mi] * g[0, p, q, ch * m + mi]
    np.testing.assert_allclose(dx.numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dilation,k,m", [(1, 3, 2), (2, 3, 1), (2, 5, 2), (3, 3, 2)])
def test_depthwise_forward_and_filter_gradient_against_numpy(dilation, k, m):
    """The depthwise part of the sep/dil conv candidates o of eq. (2),
    y(p, c*m + j) = sum_t w(t, c, j) x(p + d(t - r), c), and its filter gradient
    dL/dw(t, c, j) = sum_p x(p + d(t - r), c) g(p, c*m + j), summed term by term in NumPy: checks
    the space-to-batch paddings of the dilated forward and filter gradient (H = 7 and W = 8 are not
    multiples of every dilation)."""
    rng = np.random.default_rng(40 + dilation + k + m)
    h, w_, c = 7, 8, 2
    x = rng.normal(size=(1, h, w_, c)).astype(np.float32)
    w = rng.normal(size=(k, k, c, m)).astype(np.float32)
    g = rng.normal(size=(1, h, w_, c * m)).astype(np.float32)
    y, (dw,) = _grads(lambda b: depthwise_conv(tf.constant(x), b, dilation), [tf.constant(w)], tf.constant(g))
    r, ref = (k - 1) // 2, np.zeros_like(w, dtype=np.float64)
    ref_y = np.zeros_like(g, dtype=np.float64)
    for i, j, ch, mi, ti, tj in np.ndindex(h, w_, c, m, k, k):
        p, q = i + dilation * (ti - r), j + dilation * (tj - r)
        if 0 <= p < h and 0 <= q < w_:
            ref[ti, tj, ch, mi] += x[0, p, q, ch] * g[0, i, j, ch * m + mi]
            ref_y[0, i, j, ch * m + mi] += w[ti, tj, ch, mi] * x[0, p, q, ch]
    np.testing.assert_allclose(y.numpy(), ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_dilated_depthwise_with_unknown_spatial_shape():
    """Without static H and W the dilated path falls back to TensorFlow's space-to-batch: same
    outputs and gradients as with them."""
    rng = np.random.default_rng(9)
    x = tf.constant(rng.normal(size=(2, 7, 6, 3)), tf.float32)
    w = tf.constant(rng.normal(size=(3, 3, 3, 2)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 7, 6, 6)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([3, 3, 3, 2]),
                                  tf.TensorSpec([None, None, None, 6])])
    def unknown(a, b, out_grad):
        return _grads(lambda a_, b_: depthwise_conv(a_, b_, 2), [a, b], out_grad)

    y, got = unknown(x, w, g)
    y_ref, expected = _grads(lambda a, b: depthwise_conv(a, b, 2), [x, w], g)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-4)


def _weighted_reference(tensors, weights):
    return tf.add_n([tf.expand_dims(t, -2) * tf.reshape(w, [-1, 1])
                     for t, w in zip(tensors, tf.unstack(weights, axis=1))])


@pytest.mark.parametrize("n,m,c", [(4, 3, 4), (3, 3, 2), (1, 2, 5), (2, 1, 3)])
def test_weighted_copies_gradients_match_the_broadcast(n, m, c):
    from iac_tf.search.kernels import weighted_copies

    rng = np.random.default_rng(100 * n + 10 * m + c)
    ts = [tf.constant(rng.normal(size=(2, 6, 5, c)), tf.float32) for _ in range(m)]
    w = tf.constant(rng.normal(size=(n, m)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 6, 5, n, c)), tf.float32)
    y, grads = _grads(weighted_copies, [ts, w], g)
    y_ref, grads_ref = _grads(_weighted_reference, [ts, w], g)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(tf.nest.flatten(grads), tf.nest.flatten(grads_ref)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    # against NumPy: dL/dw[k, o] = sum g[..., k, :] * t_o, dL/dt_o = sum_k w[k, o] g[..., k, :]
    t_np, g_np = np.stack([t.numpy() for t in ts]), g.numpy()
    np.testing.assert_allclose(grads[1].numpy(), np.einsum("bhwkc,obhwc->ko", g_np, t_np), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack([d.numpy() for d in grads[0]]),
                               np.einsum("bhwkc,ko->obhwc", g_np, w.numpy()), rtol=1e-5, atol=1e-6)


def test_weighted_copies_unknown_spatial_shape_and_float16():
    from iac_tf.search.kernels import weighted_copies

    rng = np.random.default_rng(3)
    ts = [tf.constant(rng.normal(size=(2, 4, 3, 2)), tf.float32) for _ in range(3)]
    w = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 4, 3, 4, 2)), tf.float32)
    spec = tf.TensorSpec([None, None, None, 2])

    @tf.function(input_signature=[spec, spec, spec, tf.TensorSpec([4, 3]), tf.TensorSpec([None, None, None, 4, 2])])
    def run(a, b, c, w, g):
        y, grads = _grads(weighted_copies, [[a, b, c], w], g)
        return y, grads[1]

    y, dw = run(*ts, w, g)
    np.testing.assert_allclose(y.numpy(), _weighted_reference(ts, w).numpy(), rtol=1e-5, atol=1e-6)
    t_np = np.stack([t.numpy() for t in ts])
    np.testing.assert_allclose(dw.numpy(), np.einsum("bhwkc,obhwc->ko", g.numpy(), t_np), rtol=1e-5, atol=1e-5)
    y16 = weighted_copies([tf.cast(t, tf.float16) for t in ts], w)
    assert y16.dtype == tf.float16 and y16.shape == (2, 4, 3, 4, 2)
    np.testing.assert_allclose(y16.numpy(), y.numpy(), rtol=2e-2, atol=2e-2)


def test_constant_is_made_once_per_graph_and_orders_nothing():
    from iac_tf.search.kernels import constant

    made = {}

    @tf.function
    def trace(x):
        with tf.control_dependencies([tf.raw_ops.NoOp()]):  # the first request sits in a dependency scope
            first = constant([1, 2])
        made["same"] = constant([1, 2]) is first
        made["other_value"] = constant([2, 1]) is first
        made["other_dtype"] = constant([1, 2], tf.int64) is first
        made["control_inputs"] = list(first.op.control_inputs)
        made["graph"] = first.graph
        return x + tf.cast(tf.reduce_sum(first), x.dtype)

    assert float(trace(tf.constant(1.0))) == 4.0
    assert made["same"] and not made["other_value"] and not made["other_dtype"]
    assert made["control_inputs"] == []
    first_graph = made["graph"]
    trace(tf.constant([1.0, 2.0]))  # a new trace: a new graph, its own constants
    assert made["graph"] is not first_graph
    np.testing.assert_array_equal(constant([3, 4]).numpy(), [3, 4])  # eager: a plain constant


def _op_types(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("dilation,m", [(1, 3), (2, 1)])
def test_both_depthwise_forms_compute_the_same_function(monkeypatch, dilation, m):
    """The per-machine switch: "tensorflow" (tf.nn.depthwise_conv2d, TensorFlow's gradients) and
    "hand" give the same outputs and gradients, and each traces its own ops."""
    rng = np.random.default_rng(60 + dilation + m)
    x = tf.constant(rng.normal(size=(2, 9, 7, 3)), tf.float32)
    w = tf.constant(rng.normal(size=(5, 5, 3, m)), tf.float32)
    g = tf.constant(rng.normal(size=(2, 9, 7, 3 * m)), tf.float32)
    out, ops = {}, {}
    for form in ("hand", "tensorflow"):
        monkeypatch.setattr(kernels, "DEPTHWISE_FORM", form)
        out[form] = _grads(lambda a, b: depthwise_conv(a, b, dilation), [x, w], g)
        ops[form] = _op_types(lambda a, b: _grads(lambda a_, b_: depthwise_conv(a_, b_, dilation),
                                                   [a, b], g)[1], x, w)
    (y_h, (dx_h, dw_h)), (y_t, (dx_t, dw_t)) = out["hand"], out["tensorflow"]
    np.testing.assert_allclose(y_h.numpy(), y_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx_h.numpy(), dx_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw_h.numpy(), dw_t.numpy(), rtol=1e-5, atol=1e-4)
    assert "IdentityN" in ops["hand"]  # tf.custom_gradient
    assert "DepthwiseConv2dNativeBackpropInput" in ops["tensorflow"]
    assert "DepthwiseConv2dNativeBackpropInput" not in ops["hand"]


def test_auto_depthwise_form_follows_onednn(monkeypatch):
    monkeypatch.setattr(kernels, "DEPTHWISE_FORM", "auto")
    for onednn, form in ((True, "hand"), (None, "hand"), (False, "tensorflow")):
        monkeypatch.setattr(kernels, "onednn_enabled", lambda v=onednn: v)
        assert kernels.depthwise_form() == form
    monkeypatch.setattr(kernels, "DEPTHWISE_FORM", "dense")
    with pytest.raises(ValueError, match="DEPTHWISE_FORM must be one of"):
        kernels.depthwise_form()
