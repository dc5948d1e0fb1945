"""The fused SearchCell (ops grouped by the state they read) against the edge-by-edge reference:
same outputs, same gradients for omega, alpha and beta, same BatchNorm moving statistics, in
float32 (to 1e-5) and mixed_float16 (as close to float32 as the reference), for K = 1, 2, 4 and
both edge normalisations."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search import ArchitectureParameters, SearchCell, num_edges
from iac_tf.search import fused_cell
from iac_tf.search.fused_cell import batch_norm_shared, block_kernel, consumers
from iac_tf.search.operations import BN_EPSILON, BN_MOMENTUM, batch_norm
from iac_tf.search.search_cell import _python_bool

# float32: element-wise to 1e-5 (relative to the tensor's largest entry where that is > 1).
TOLERANCE = 1e-5
# mixed_float16 computes in float16 (eps ~1e-3), so 1e-5 between two summation orders is below
# its resolution. There the fused cell must be as accurate as the reference cell: each tensor's
# distance (relative norm) to the float32 result of the same weights may exceed the reference
# cell's own float16 distance by at most this factor, plus two float16 epsilons (2^-10 each).
FLOAT16_FACTOR = 2.0
FLOAT16_EPS = 2 * 2.0**-10


def _setup(K, edge_norm, C=8, steps=4, seed=None):
    """A cell with random (non-default) weights, BN statistics and architecture; the same ones
    in every run (the initialisers are seeded too)."""
    seed = K if seed is None else seed
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    arch = ArchitectureParameters(num_edges=num_edges(steps), init="normal", seed=3)
    cell = SearchCell(12, C=C, K=K, edge_norm=edge_norm, steps=steps)
    x0 = tf.constant(rng.normal(size=(2, 6, 6, 6)).astype(np.float32))
    x1 = tf.constant(rng.normal(size=(2, 6, 6, 10)).astype(np.float32))
    cell([x0, x1, *arch(x0)])
    for w in cell.weights + arch.weights:  # non-default weights and BN statistics
        w.assign(w.numpy() + rng.uniform(0.05, 0.5, size=w.shape).astype(np.float32))
    arch.beta.assign(rng.uniform(-1.4, 1.4, size=arch.beta.shape).astype(np.float32))
    return arch, cell, x0, x1


def _run(arch, cell, x0, x1, implementation, training):
    snapshot = [w.numpy() for w in cell.weights]
    cell.implementation = implementation
    variables = [arch.alpha, arch.beta] + cell.trainable_weights
    with tf.GradientTape() as tape:
        y = cell([x0, x1, *arch(x0)], training=training)
        target = tf.sin(tf.reshape(tf.range(tf.size(y), dtype=tf.float32), y.shape))
        loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - target))
        scale = 2.0**8 if cell.compute_dtype == "float16" else 1.0  # as LossScaleOptimizer does
        scaled = loss * scale
    grads = [g / scale for g in tape.gradient(scaled, variables)]
    after = [w.numpy() for w in cell.weights]
    for w, v in zip(cell.weights, snapshot):  # restore BN statistics for the other path
        w.assign(v)
    return y.numpy().astype(np.float32), [g.numpy() for g in grads], after


def _close(a, b, what):
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE * scale, err_msg=what)


@pytest.mark.parametrize("K,edge_norm,steps,grouped", [
    (4, "tan", 4, True),
    (2, "softmax", 3, True),
    (1, "tan", 2, False),  # conv ops edge by edge (wide C/K)
])
def test_fused_equals_reference(K, edge_norm, steps, grouped, monkeypatch):
    monkeypatch.setattr(fused_cell, "GROUP_CONVS_MAX_CHANNELS", 10**6 if grouped else 0)
    arch, cell, x0, x1 = _setup(K, edge_norm, steps=steps)
    for training in (True, False):
        y_ref, g_ref, w_ref = _run(arch, cell, x0, x1, "reference", training)
        y_fus, g_fus, w_fus = _run(arch, cell, x0, x1, "fused", training)
        _close(y_fus, y_ref, f"output, training={training}")
        names = ["alpha", "beta"] + [w.name for w in cell.trainable_weights]
        for name, a, b in zip(names, g_fus, g_ref):
            _close(a, b, f"gradient of {name}, training={training}")
        assert np.abs(g_ref[0]).sum() > 0 and np.abs(g_ref[1]).sum() > 0
        for w, a, b in zip(cell.weights, w_fus, w_ref):  # BN moving statistics
            np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE, err_msg=w.name)
    moved = [not np.array_equal(a, b) for a, b in zip(w_ref, _run(arch, cell, x0, x1, "fused", False)[2])]
    assert not any(moved)  # inference leaves the statistics alone


def _distance(a, truth):
    return np.linalg.norm(a - truth) / max(np.linalg.norm(truth), 1e-12)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "known: the per-tensor float16 bound fails for this weight draw (and for 6 of 10 draws; "
    "the reference is as often the worse); see the docstring and the issue 12 note"))
def test_fused_as_accurate_as_reference_in_mixed_float16():
    """Same weights in a float32 cell give the truth; under mixed_float16 both paths are compared
    with it, output, gradients (alpha, beta, every omega) and BN statistics alike. (In float16
    the fused cell runs the conv ops edge by edge: grouped, one gradient measured 2.9x the
    reference's float16 error.)

    Known failure, pinned: with unseeded weights this test failed in about half of its runs.
    Over 10 seeded draws, 6 had at least one tensor outside the bound (up to 49 of 66), and the
    reference cell was as often the worse of the two, by a larger factor (up to 1362x on one
    tensor against the fused cell's 449x). The per-tensor float16 error of small gradients
    behind a batch-statistics BN varies with the draw. The weights are now seeded, and this
    draw fails (edge12 sep_conv_5x5 pointwise0: 6.3e-3 fused vs 2.0e-3 reference). A criterion
    that separates a real loss of accuracy from that noise is open (issue 12)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        arch, cell16, x0, x1 = _setup(4, "tan")
        assert cell16.compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    cell32 = SearchCell(12, C=8, K=4, edge_norm="tan", steps=4)
    cell32([x0, x1, *arch(x0)])
    cell32.set_weights(cell16.get_weights())
    names = ["output", "alpha", "beta"] + [f"gradient of {w.name}" for w in cell16.trainable_weights]
    for training in (True, False):
        y32, g32, w32 = _run(arch, cell32, x0, x1, "reference", training)
        y_ref, g_ref, w_ref = _run(arch, cell16, x0, x1, "reference", training)
        y_fus, g_fus, w_fus = _run(arch, cell16, x0, x1, "fused", training)
        assert np.all(np.isfinite(y_fus)) and all(np.all(np.isfinite(g)) for g in g_fus)
        for name, truth, ref, fus in zip(names, [y32] + g32, [y_ref] + g_ref, [y_fus] + g_fus):
            d_ref, d_fus = _distance(ref, truth), _distance(fus, truth)
            assert d_fus <= FLOAT16_FACTOR * d_ref + FLOAT16_EPS, (
                f"{name}, training={training}: fused {d_fus:.2e} vs reference {d_ref:.2e} from float32")
        for w, truth, ref, fus in zip(cell16.weights, w32, w_ref, w_fus):
            assert _distance(fus, truth) <= FLOAT16_FACTOR * _distance(ref, truth) + FLOAT16_EPS, w.name


@pytest.mark.parametrize("multiplier_layout", [True, False])
def test_block_kernel_against_numpy(multiplier_layout):
    """Edge k's pointwise kernel [d, f] sits at (d*n + k, k*c + f) (after a depthwise
    convolution with channel multiplier n) or (k*c + d, k*c + f); everything else is 0."""
    n, c = 3, 2
    kernels = np.random.default_rng(0).normal(size=(n, 1, 1, c, c)).astype(np.float32)
    want = np.zeros((c * n, n * c), np.float32)
    for k in range(n):
        for d in range(c):
            row = d * n + k if multiplier_layout else k * c + d
            want[row, k * c:(k + 1) * c] = kernels[k, 0, 0, d]
    got = block_kernel([tf.constant(k) for k in kernels], multiplier_layout, tf.float32)
    np.testing.assert_array_equal(got.numpy(), want.reshape(1, 1, c * n, n * c))


def test_batch_norm_shared_against_numpy():
    """Training mode: one normalised tensor for every edge, (x - mean) / sqrt(var + eps) with the
    biased batch variance; each edge's moving statistics m * old + (1 - m) * batch, with the
    Bessel-corrected batch variance (tf_keras' fused rule)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    bns = [batch_norm(False) for _ in range(2)]
    for bn in bns:
        bn.build((None, 4, 4, 3))
        bn.moving_mean.assign(rng.normal(size=3).astype(np.float32))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=3).astype(np.float32))
    old = [(bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in bns]
    y = batch_norm_shared(tf.constant(x), bns, training=True).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    assert y.shape == (2, 4, 4, 1, 3)
    np.testing.assert_allclose(y[..., 0, :], (x - mean) / np.sqrt(var + BN_EPSILON), rtol=1e-4, atol=1e-5)
    unbiased = var * x[..., 0].size / (x[..., 0].size - 1)
    for bn, (m0, v0) in zip(bns, old):
        np.testing.assert_allclose(bn.moving_mean.numpy(), BN_MOMENTUM * m0 + (1 - BN_MOMENTUM) * mean,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.moving_variance.numpy(),
                                   BN_MOMENTUM * v0 + (1 - BN_MOMENTUM) * unbiased, rtol=1e-5, atol=1e-6)


def test_consumers_cover_every_edge_once():
    readers = consumers(4)
    assert readers[0] == [0, 2, 5, 9] and readers[4] == [13] and readers[5] == []
    assert sorted(e for group in readers for e in group) == list(range(14))


def test_training_flag_and_implementation_checks():
    assert [_python_bool(v) for v in (None, False, True, 1, tf.constant(True))] == [
        False, False, True, True, True]
    with tf.Graph().as_default():
        assert _python_bool(tf.compat.v1.placeholder(tf.bool, [])) is None  # -> reference path
    with pytest.raises(ValueError, match="implementation"):
        SearchCell(8, implementation="fast")
