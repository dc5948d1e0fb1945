"""Dice loss / metric against an independent NumPy computation; empty masks; serialisation."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.losses import DiceCoefficient, DiceLoss, dice_coefficient, dice_per_channel


def _np_dice(g, p, eps):
    out = np.zeros((g.shape[0], g.shape[-1]))
    for b in range(g.shape[0]):
        for c in range(g.shape[-1]):
            gi, pi = g[b, ..., c].ravel(), p[b, ..., c].ravel()
            out[b, c] = (2 * np.dot(gi, pi) + eps) / (gi.sum() + pi.sum() + eps)
    return out


@pytest.mark.parametrize("eps", [1.0, 1e-5])
def test_dice_matches_numpy(eps):
    rng = np.random.default_rng(0)
    g = (rng.random((3, 8, 8, 2)) > 0.6).astype(np.float32)
    p = rng.random((3, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(dice_per_channel(g, p, eps).numpy(), _np_dice(g, p, eps), rtol=1e-5)
    np.testing.assert_allclose(float(dice_coefficient(g, p, eps)), _np_dice(g, p, eps).mean(), rtol=1e-5)
    loss = DiceLoss(eps=eps)(g, p)
    np.testing.assert_allclose(float(loss), 1 - _np_dice(g, p, eps).mean(), rtol=1e-5)


def test_hand_made_masks_exact_values():
    g = np.zeros((1, 4, 4, 1), np.float32)
    g[0, :2, :2, 0] = 1  # 4 pixels
    p = np.zeros_like(g)
    p[0, :2, :, 0] = 1  # 8 pixels, 4 overlap
    assert float(dice_coefficient(g, p, eps=0.0)) == pytest.approx(2 * 4 / (4 + 8))


def test_empty_masks_scoring():
    empty = np.zeros((1, 4, 4, 1), np.float32)
    assert float(dice_coefficient(empty, empty)) == pytest.approx(1.0)  # correct "nothing here"
    wrong = np.ones_like(empty)
    assert float(dice_coefficient(empty, wrong)) == pytest.approx(1.0 / 17.0)


def test_metric_accumulates_and_thresholds():
    g = np.zeros((2, 4, 4, 1), np.float32)
    g[:, :2] = 1
    p = np.full_like(g, 0.6)
    m = DiceCoefficient(threshold=0.5, eps=0.0)
    m.update_state(g[:1], p[:1])
    m.update_state(g[1:], p[1:])
    assert float(m.result()) == pytest.approx(2 * 8 / (8 + 16))


def test_loss_and_metric_serialise_in_a_saved_model(tmp_path):
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(inp))
    model.compile("adam", loss=DiceLoss(eps=0.5), metrics=[DiceCoefficient(eps=0.5, threshold=0.5)])
    x = np.random.default_rng(1).random((2, 4, 4, 1)).astype(np.float32)
    model.fit(x, (x > 0.5).astype(np.float32), verbose=0, epochs=1)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.loss.eps == 0.5
    assert DiceLoss.from_config(DiceLoss(eps=0.25).get_config()).eps == 0.25
    cfg = DiceCoefficient(eps=0.5, threshold=0.3).get_config()
    assert DiceCoefficient.from_config(cfg).threshold == 0.3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_rule_metric_serialises_and_scores_the_same_after_a_reload(tmp_path):
    """``DiceCoefficient(classes=...)`` (the selection metric under the label rule):
    get_config -> from_config and a compiled .keras save -> load keep its classes and mode and
    give the same value on data where two exclusive classes are both above 0.5."""
    classes = [[1], [2]]
    metric = DiceCoefficient(eps=1.0, classes=classes, name="soft_dice")
    again = DiceCoefficient.from_config(metric.get_config())
    assert again.classes == classes and again.label_mode is None and again.threshold is None
    inp = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(2, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.array([[[[4.0, 2.0]]]], np.float32), np.array([0.0, 0.5], np.float32)])
    model.compile("adam", loss=DiceLoss(), metrics=[metric])
    x = np.random.default_rng(3).normal(0, 2, (3, 4, 4, 1)).astype(np.float32)
    y = np.stack([x[..., 0] < 0, x[..., 0] > 0], -1).astype(np.float32)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["soft_dice"]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)["soft_dice"]
    assert after == pytest.approx(before, abs=1e-6)
    per_channel = DiceCoefficient(eps=1.0)
    per_channel.update_state(y, model(x))
    probs = model(x).numpy()
    assert ((probs > 0.5).sum(-1) == 2).any()  # double labels: the two metrics differ
    assert float(per_channel.result()) != pytest.approx(before, abs=1e-4)


def test_dice_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    g = tf.constant((rng.random((1, 3, 3, 1)) > 0.5).astype(np.float64))
    p = tf.Variable(rng.uniform(0.1, 0.9, (1, 3, 3, 1)))
    with tf.GradientTape() as tape:
        loss = 1 - dice_coefficient(g, p)
    grad = tape.gradient(loss, p).numpy()
    h = 1e-6
    num = np.zeros_like(grad)
    base = p.numpy()
    for idx in np.ndindex(base.shape):
        for sign in (1, -1):
            q = base.copy()
            q[idx] += sign * h
            gn, qn = g.numpy().astype(np.float64), q
            val = 1 - _np_dice(gn, qn, 1.0).mean()
            num[idx] += sign * val / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-6)
