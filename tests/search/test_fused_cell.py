"""The fused SearchCell (ops grouped by the state they read) against the edge-by-edge reference:
same outputs, same gradients for omega, alpha and beta, same BatchNorm moving statistics, in
float32 (to 1e-5) and mixed_float16 (both within float16 accuracy of float32), for K = 1, 2, 4 and
both edge normalisations.

Covers: iac_tf/search/cell_io.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search import ArchitectureParameters, SearchCell, num_edges
from iac_tf.search import fused_cell
from iac_tf.search.fused_cell import batch_norm_shared, block_kernel, consumers
from iac_tf.search.operations import BN_EPSILON, BN_MOMENTUM, batch_norm
from iac_tf.search.cell_io import static_training

# float32: element-wise to 1e-5 (relative to the tensor's largest entry where that is > 1).
TOLERANCE = 1e-5
# mixed_float16 computes in float16 (unit roundoff 2^-11), so 1e-5 between two summation orders is
# below its resolution. There both paths are compared with the float32 result of the same weights,
# per group (output, BN statistics, and the gradients of alpha, of beta and of all omega), as the
# relative norm over the group. Over 30 seeded weight draws x {training, inference} the largest
# distances were: output 6.3e-4 (reference 6.2e-4), BN statistics 3.7e-4 (3.8e-4), alpha 6.2e-3
# (5.9e-3), beta 1.4e-2 (6.2e-3), omega 3.4e-3 (1.6e-3); single small gradient tensors reached
# 0.37 in both paths. A wrong function (a missing term, a wrong weight) is off by O(1).
F16_VALUE_TOL = 2.0**-8  # output and BN statistics
F16_GRADIENT_TOL = 2.0**-5  # gradients: they pass through batch-statistics BNs (cancellation)
F16_TENSOR_TOL = 1.0  # any single tensor: an error as large as the tensor itself is a wrong one


def _setup(K, edge_norm, C=8, steps=4, seed=None, upsampling=None):
    """A cell with random (non-default) weights, BN statistics and architecture; the same ones
    in every run (the initialisers are seeded too). ``upsampling``: input0 arrives before a
    nearest upsampling by that factor (``SearchCell(input0_upsampling=)``)."""
    seed = K if seed is None else seed
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    arch = ArchitectureParameters(num_edges=num_edges(steps), init="normal", seed=3)
    cell = SearchCell(12, C=C, K=K, edge_norm=edge_norm, steps=steps, input0_upsampling=upsampling)
    sh, sw = upsampling or (1, 1)
    x0 = tf.constant(rng.normal(size=(2, 6 // sh, 6 // sw, 6)).astype(np.float32))
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


@pytest.mark.parametrize("K,edge_norm,steps,grouped,upsampling", [
    (4, "tan", 4, True, None),
    (2, "softmax", 3, True, None),
    (1, "tan", 2, False, None),  # conv ops edge by edge (wide C/K)
    # input0 before a nearest upsampling: the reference upsamples first (the definition), the
    # fused path preprocesses at the low resolution
    (4, "tan", 4, True, (2, 2)),
    (2, "softmax", 2, False, (3, 2)),
])
def test_fused_equals_reference(K, edge_norm, steps, grouped, upsampling, monkeypatch):
    monkeypatch.setattr(fused_cell, "GROUP_CONVS_MAX_CHANNELS", 10**6 if grouped else 0)
    arch, cell, x0, x1 = _setup(K, edge_norm, steps=steps, upsampling=upsampling)
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


def _group_distance(pairs):
    """Relative norm of (value - truth) over a group of tensors."""
    err = sum(float(np.sum((v.astype(np.float64) - t) ** 2)) for v, t in pairs)
    ref = sum(float(np.sum(t.astype(np.float64) ** 2)) for _, t in pairs)
    return np.sqrt(err / max(ref, 1e-30))


def _float16_distances(y, grads, stats, y32, g32, w32):
    """Group distances to the float32 truth: output, BN statistics, alpha, beta, omega; and the
    largest single-tensor distance."""
    groups = {
        "output": [(y, y32)],
        "BN statistics": list(zip(stats, w32)),
        "alpha gradient": [(grads[0], g32[0])],
        "beta gradient": [(grads[1], g32[1])],
        "omega gradients": list(zip(grads[2:], g32[2:])),
    }
    out = {name: _group_distance(pairs) for name, pairs in groups.items()}
    worst = max(_group_distance([pair]) for pairs in groups.values() for pair in pairs
                if np.any(pair[1]))
    return out, worst


F16_BOUNDS = {"output": F16_VALUE_TOL, "BN statistics": F16_VALUE_TOL,
              "alpha gradient": F16_GRADIENT_TOL, "beta gradient": F16_GRADIENT_TOL,
              "omega gradients": F16_GRADIENT_TOL}


def _float16_runs(seed, implementations=("fused", "reference")):
    """Yield (implementation, training, finite, group distances, worst tensor) for a cell of
    float16 compute (``_setup(4, "tan", seed)``) against a float32 cell with the same weights."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        arch, cell16, x0, x1 = _setup(4, "tan", seed=seed)
        assert cell16.compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    cell32 = SearchCell(12, C=8, K=4, edge_norm="tan", steps=4)
    cell32([x0, x1, *arch(x0)])
    cell32.set_weights(cell16.get_weights())
    for training in (True, False):
        truth = _run(arch, cell32, x0, x1, "reference", training)
        for implementation in implementations:
            y, grads, stats = _run(arch, cell16, x0, x1, implementation, training)
            finite = bool(np.all(np.isfinite(y)) and all(np.all(np.isfinite(g)) for g in grads))
            distances, worst = _float16_distances(y, grads, stats, *truth) if finite else ({}, None)
            yield implementation, training, finite, distances, worst


@pytest.mark.parametrize("seed", [4, 7])  # 7: the largest fused distances of the 30 draws
def test_fused_matches_float32_in_mixed_float16(seed):
    """Under mixed_float16 the fused cell computes the float32 function to float16 accuracy:
    the same weights in a float32 cell give the truth, and the output, the BN statistics and
    the gradients for alpha, beta and omega (with a loss scale, as ``LossScaleOptimizer`` uses)
    stay within the bounds above, in training and inference mode; everything finite.

    The reference cell is held to the same bounds where its gradients are finite: in 8 of the 30
    inference-mode draws its alpha gradient overflowed float16 (NaN; dynamic loss scaling would
    skip such a step), where the fused cell takes d/d(psi phi) from the float32 BN scale."""
    for implementation, training, finite, distances, worst in _float16_runs(seed):
        if implementation == "fused":
            assert finite, f"fused cell, training={training}: non-finite output or gradient"
        elif not finite:
            continue
        for name, d in distances.items():
            assert d <= F16_BOUNDS[name], (
                f"{implementation}, training={training}: {name} {d:.2e} from float32 "
                f"(bound {F16_BOUNDS[name]:.1e}); all: {distances}")
        assert worst <= F16_TENSOR_TOL, f"{implementation}, training={training}: a tensor {worst:.2f} off"


def test_float16_bounds_catch_a_wrong_function(monkeypatch):
    """The bounds are not vacuous: a fused cell whose one edge's Psi is 25 % too large, in
    float16 only, breaks them (measured: output 5.2e-2 / 1.9e-2 in training / inference mode
    against 3.9e-3; beta gradient 0.89 / 8.2e-2 against 3.1e-2)."""
    from iac_tf.search import search_cell

    original = search_cell.fused_nodes

    def wrong(cell, states, phi, psi, training):
        if cell.compute_dtype == "float16":
            psi = psi * tf.constant([1.25] + [1.0] * (int(psi.shape[0]) - 1))
        return original(cell, states, phi, psi, training)

    monkeypatch.setattr(search_cell, "fused_nodes", wrong)
    for _, training, finite, distances, _ in _float16_runs(4, ("fused",)):
        assert finite
        broken = [name for name, d in distances.items() if d > F16_BOUNDS[name]]
        assert "output" in broken and any("gradient" in name for name in broken), (training, distances)


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
    assert y.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + BN_EPSILON), rtol=1e-4, atol=1e-5)
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
    assert [static_training(v) for v in (None, False, True, 1, tf.constant(True))] == [
        False, False, True, True, True]
    with tf.Graph().as_default():
        assert static_training(tf.compat.v1.placeholder(tf.bool, [])) is None  # -> reference path
    with pytest.raises(ValueError, match="implementation"):
        SearchCell(8, implementation="fast")


def test_input0_upsampling_is_the_cell_on_the_upsampled_input():
    """``input0_upsampling`` computes exactly the cell of the upsampled input0 (fused path,
    training and inference), BN moving statistics included, and checks the shapes."""
    arch, cell, x0, x1 = _setup(4, "tan", upsampling=(2, 2))
    plain = SearchCell(12, C=8, K=4, edge_norm="tan", steps=4, name="plain")
    up0 = keras.layers.UpSampling2D((2, 2))(x0)
    plain([up0, x1, *arch(up0)])
    plain.set_weights(cell.get_weights())
    for training in (True, False):
        y = cell([x0, x1, *arch(x0)], training=training)
        want = plain([up0, x1, *arch(up0)], training=training)
        _close(y.numpy(), want.numpy(), f"training={training}")
    for a, b in zip(cell.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=TOLERANCE, atol=TOLERANCE, err_msg=a.name)
    with pytest.raises(ValueError, match=r"differ in height \(input0 upsampled 2x\)"):
        SearchCell(12, C=8, K=4, input0_upsampling=2)([x1, x1, *arch(x1)])
    with pytest.raises(ValueError, match="two positive ints"):
        SearchCell(12, input0_upsampling=(2, 0))
    config = cell.get_config()
    assert config["input0_upsampling"] == [2, 2]
    assert SearchCell.from_config(config).input0_upsampling == (2, 2)
