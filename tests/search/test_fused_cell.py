"""The fused SearchCell (ops grouped by the state they read) against the edge-by-edge reference:
same outputs, same gradients for omega, alpha and beta, same BatchNorm moving statistics, in
float32 (to 1e-5) and mixed_float16 (as close to float32 as the reference), for K = 1, 2, 4 and
both edge normalisations."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search import ArchitectureParameters, SearchCell
from iac_tf.search import fused_cell
from iac_tf.search.fused_cell import consumers
from iac_tf.search.search_cell import _python_bool

# float32: element-wise to 1e-5 (relative to the tensor's largest entry where that is > 1).
TOLERANCE = 1e-5
# mixed_float16 computes in float16 (eps ~1e-3), so 1e-5 between two summation orders is below
# its resolution. There the fused cell must be as accurate as the reference cell: each tensor's
# distance (relative norm) to the float32 result of the same weights may exceed the reference
# cell's own float16 distance by at most this factor, plus two float16 epsilons (2^-10 each).
FLOAT16_FACTOR = 2.0
FLOAT16_EPS = 2 * 2.0**-10


def _setup(K, edge_norm, C=8, steps=4):
    """A cell with random (non-default) weights, BN statistics and architecture."""
    rng = np.random.default_rng(K)
    arch = ArchitectureParameters(num_edges=sum(j + 2 for j in range(steps)), init="normal", seed=3)
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


def test_fused_as_accurate_as_reference_in_mixed_float16():
    """Same weights in a float32 cell give the truth; under mixed_float16 both paths are compared
    with it, output, gradients (alpha, beta, every omega) and BN statistics alike. (In float16
    the fused cell runs the conv ops edge by edge: grouped, one gradient measured 2.9x the
    reference's float16 error.)"""
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
