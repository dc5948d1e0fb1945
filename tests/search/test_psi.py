"""Psi edge normalisation, eq. (4) and (6)-(10), against the NumPy reference; gradients; NaN safety."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search import PsiEdgeNorm, psi_edge_weights
from tests.search.reference import PSI, psi_all, psi_tan

HALF_PI = np.pi / 2

CASES = [
    [1.0, 1.0],
    [1.0, 1.0, 1.0],
    [0.0, 0.1, -0.2, 0.3],
    [1.3, 0.2, 0.1],  # tan(1.3)=3.6 dominates: capped
    [1.0, 0.9, 0.8, 0.7, 0.0],  # close values: not capped
    [1.2, -1.2, 0.5, 0.4, 0.3],
    [HALF_PI - 1e-3, 0.2, 0.1],  # near the pole from below: huge tan, capped
    [HALF_PI + 1e-3, 0.2, 0.1],  # just past the pole: tan -> -1000, loses
    [-0.4, 0.9, 1.1, 1.0],
]


@pytest.mark.parametrize("mode", ["tan", "softmax"])
@pytest.mark.parametrize("beta", CASES)
def test_psi_matches_numpy_reference(mode, beta):
    got = psi_edge_weights(np.array(beta, np.float32), mode).numpy()
    want = PSI[mode](np.array(beta, np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(), 1.0, rtol=1e-6)


def test_tan_cap_hand_values():
    # beta with tan = (2, 0, 0): hat = (e^2, 1, 1)/(e^2+2) = 0.787 > 0.5 -> (0.5, 0.25, 0.25).
    beta = np.arctan([2.0, 0.0, 0.0])
    np.testing.assert_allclose(psi_edge_weights(beta, "tan").numpy(), [0.5, 0.25, 0.25], atol=1e-6)
    # tan = (2, 1, 0): rest share 0.5 as e : 1.
    beta = np.arctan([2.0, 1.0, 0.0])
    e = np.e
    np.testing.assert_allclose(
        psi_edge_weights(beta, "tan").numpy(), [0.5, 0.5 * e / (e + 1), 0.5 / (e + 1)], atol=1e-6
    )
    # not capped: max <= 0.5 keeps Psi_hat (eq. (7)).
    beta = np.arctan([0.1, 0.0, 0.0])
    np.testing.assert_allclose(psi_edge_weights(beta, "tan").numpy(), psi_tan(beta), atol=1e-7)
    assert psi_edge_weights(beta, "tan").numpy().max() <= 0.5


def test_two_input_node_is_always_half_half_in_tan_mode():
    for beta in ([3.0, -1.0], [0.0, 0.0], [HALF_PI - 1e-4, 0.0], [-5.0, 7.0]):
        np.testing.assert_allclose(psi_edge_weights(beta, "tan").numpy(), [0.5, 0.5], atol=1e-7)


def test_batched_last_axis():
    beta = np.array([[1.3, 0.2, 0.1], [0.0, 0.1, -0.2]], np.float32)
    got = psi_edge_weights(beta, "tan").numpy()
    np.testing.assert_allclose(got, np.stack([psi_tan(b) for b in beta]), atol=1e-6)


def _fd_jacobian(f, beta, h=1e-6):
    beta = np.asarray(beta, np.float64)
    cols = []
    for k in range(len(beta)):
        d = np.zeros_like(beta)
        d[k] = h
        cols.append((f(beta + d) - f(beta - d)) / (2 * h))
    return np.stack(cols, axis=1)  # J[i, k] = dPsi_i / dbeta_k


@pytest.mark.parametrize("mode", ["tan", "softmax"])
@pytest.mark.parametrize(
    "beta", [[0.0, 0.1, -0.2, 0.3], [1.3, 0.2, 0.1], [-0.4, 0.9, 1.1, 1.0, 0.2]]
)
def test_gradient_matches_finite_differences(mode, beta):
    beta_t = tf.constant(beta, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(beta_t)
        psi = psi_edge_weights(beta_t, mode)
        rows = [psi[i] for i in range(len(beta))]
    jac = np.stack([tape.gradient(r, beta_t).numpy() for r in rows])
    want = _fd_jacobian(PSI[mode], beta)
    np.testing.assert_allclose(jac, want, rtol=2e-3, atol=2e-5)


def test_capped_winner_gets_no_gradient_but_the_rest_do():
    beta = tf.Variable([1.3, 0.2, 0.1, -0.3])
    assert psi_tan(beta.numpy()).max() == pytest.approx(0.5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(psi_edge_weights(beta, "tan") * tf.constant([3.0, 1.0, -2.0, 5.0]))
    grad = tape.gradient(loss, beta).numpy()
    assert grad[0] == 0.0
    assert np.all(np.abs(grad[1:]) > 1e-4)


def test_two_input_node_gets_no_gradient_in_tan_mode_but_does_in_softmax():
    beta = tf.Variable([0.3, -0.2])
    weights = tf.constant([1.0, -1.0])
    with tf.GradientTape(persistent=True) as tape:
        tan_loss = tf.reduce_sum(psi_edge_weights(beta, "tan") * weights)
        soft_loss = tf.reduce_sum(psi_edge_weights(beta, "softmax") * weights)
    np.testing.assert_array_equal(tape.gradient(tan_loss, beta).numpy(), [0.0, 0.0])
    assert np.all(np.abs(tape.gradient(soft_loss, beta).numpy()) > 1e-3)


def test_exact_tie_of_two_inputs_takes_the_uncapped_branch():
    # beta = (1, 1), the paper's ones init: Psi_hat = (0.5, 0.5) is not > 0.5, so eq. (7) applies
    # and the gradient is softmax's; any step off the tie caps it and the gradient vanishes.
    beta = tf.Variable([1.0, 1.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(psi_edge_weights(beta, "tan") * tf.constant([1.0, -1.0]))
    grad = tape.gradient(loss, beta).numpy()
    expected = 0.25 * 2 / np.cos(1.0) ** 2  # dPsi0/dt0 * dt0/dbeta0, minus the other edge
    np.testing.assert_allclose(grad, [expected, -expected], rtol=1e-5)


@pytest.mark.parametrize("mode", ["tan", "softmax"])
def test_no_nan_or_inf_across_the_poles_of_tan(mode):
    sweep = np.linspace(-HALF_PI - 0.05, HALF_PI + 0.05, 2001)
    poles = np.float32(HALF_PI) + np.arange(-4, 5, dtype=np.float32) * np.float32(1e-7)
    poles = np.concatenate([poles, -poles, poles + np.float32(np.pi), [np.float32(HALF_PI)]])
    first = np.concatenate([sweep, poles]).astype(np.float32)
    others = np.tile(np.array([[0.3, -0.1, HALF_PI - 1e-3]], np.float32), (len(first), 1))
    beta = tf.Variable(np.concatenate([first[:, None], others], axis=1))
    with tf.GradientTape() as tape:
        psi = psi_edge_weights(beta, mode)
        loss = tf.reduce_sum(psi * tf.constant([1.0, -2.0, 0.5, 3.0]))
    grad = tape.gradient(loss, beta).numpy()
    assert np.isfinite(psi.numpy()).all()
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(psi.numpy().sum(axis=-1), 1.0, rtol=1e-5)
    assert psi.numpy().max() <= (0.5 + 1e-6 if mode == "tan" else 1.0)


def test_bad_mode_and_shape():
    with pytest.raises(ValueError, match="edge normalisation mode"):
        psi_edge_weights([0.0, 1.0], "cos")
    with pytest.raises(ValueError, match="at least 2 edges"):
        psi_edge_weights([0.0], "tan")


@pytest.mark.parametrize("mode", ["tan", "softmax"])
def test_layer_applies_psi_node_by_node(mode):
    rng = np.random.default_rng(1)
    beta = rng.uniform(-1.4, 1.4, size=14).astype(np.float32)
    got = PsiEdgeNorm(mode)(tf.constant(beta)).numpy()
    np.testing.assert_allclose(got, psi_all(beta, mode), rtol=1e-5, atol=1e-6)


def test_layer_is_float32_under_mixed_precision_and_round_trips():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = PsiEdgeNorm("tan")
        out = layer(tf.ones(14, tf.float16))
        assert layer.compute_dtype == "float32" and out.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    clone = PsiEdgeNorm.from_config(layer.get_config())
    assert clone.mode == "tan" and clone.steps == 4
    with pytest.raises(ValueError, match=r"shape \(14,\)"):
        PsiEdgeNorm()(tf.ones(13))
