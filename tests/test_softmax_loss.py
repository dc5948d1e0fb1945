"""The loss of a softmax U-Net (soft Dice of the class channels + cross-entropy over background +
classes, :mod:`iac_tf.losses`) against an independent NumPy computation in long double; the
loss family chosen by the output; serialisation; the sigmoid loss unchanged."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.labels import LabelRule
from iac_tf.losses import (DiceCELoss, DiceCoefficient, DiceLoss, loss_and_dice, selection_metric,
                           training_loss, with_background)


def np_softmax_loss(g, p, eps):
    """Per sample: 1 - mean over classes of the soft Dice of p[..., 1:] vs g, plus the mean over
    pixels of -sum_j t_j log(clip(p_j)), t = (1 - any class, g); written out with loops."""
    g = g.astype(np.longdouble)
    p = p.astype(np.longdouble)
    batch, n = g.shape[0], g.shape[-1]
    loss, dice = np.zeros(batch, np.longdouble), np.zeros(batch, np.longdouble)
    for b in range(batch):
        per_class = []
        for c in range(n):
            gi, pi = g[b, ..., c].ravel(), p[b, ..., c + 1].ravel()
            per_class.append((2 * np.dot(gi, pi) + eps) / (gi.sum() + pi.sum() + eps))
        dice[b] = np.mean(per_class)
        ce = []
        for y in range(g.shape[1]):
            for x in range(g.shape[2]):
                fg = g[b, y, x]
                target = np.concatenate([[1 - fg.max()], fg])
                probs = np.clip(p[b, y, x], 1e-7, 1 - 1e-7)
                ce.append(-np.sum(target * np.log(probs)))
        loss[b] = 1 - dice[b] + np.mean(ce)
    return loss, dice


def exclusive_masks(rng, shape, n):
    """(B, H, W, n) one-hot class masks with background: each pixel in at most one class."""
    labels = rng.integers(0, n + 1, shape)
    return np.stack([labels == k + 1 for k in range(n)], axis=-1).astype(np.float32)


def softmax_probs(rng, shape, n):
    logits = rng.normal(0, 2, shape + (n + 1,))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("eps", [1.0, 1e-5])
def test_dice_ce_matches_numpy(eps):
    rng = np.random.default_rng(0)
    g = exclusive_masks(rng, (3, 6, 5), 2)
    p = softmax_probs(rng, (3, 6, 5), 2)
    p[0, 0, 0] = [1.0, 0.0, 0.0]  # a certain pixel: the clip keeps log finite
    want_loss, want_dice = np_softmax_loss(g, p, eps)
    loss, dice = loss_and_dice(g, p, "softmax", eps)
    np.testing.assert_allclose(loss.numpy(), want_loss.astype(np.float64), rtol=2e-6)
    np.testing.assert_allclose(dice.numpy(), want_dice.astype(np.float64), rtol=2e-6)
    # the Keras loss: the batch mean
    assert float(DiceCELoss(eps=eps)(g, p)) == pytest.approx(float(want_loss.mean()), rel=2e-6)
    # a slice without any class: the background is the whole target
    empty = np.zeros((1, 6, 5, 2), np.float32)
    want, _ = np_softmax_loss(empty, p[:1], eps)
    assert float(DiceCELoss(eps=eps)(empty, p[:1])) == pytest.approx(float(want[0]), rel=2e-6)


def test_hand_made_values():
    """One pixel of class 2 predicted (0.25, 0.25, 0.5), one background pixel predicted
    (0.5, 0.5, 0): Dice terms with eps 0 and the cross-entropy by hand."""
    g = np.array([[[[0, 1], [0, 0]]]], np.float32)  # (1, 1, 2, 2)
    p = np.array([[[[0.25, 0.25, 0.5], [0.5, 0.5, 0.0]]]], np.float32)
    # class 1: g empty, p sums 0.75 -> 0 / 0.75 = 0; class 2: 2*0.5 / (1 + 0.5)
    dice = (0.0 + 2 * 0.5 / 1.5) / 2
    ce = (-np.log(0.5) - np.log(0.5)) / 2
    loss, d = loss_and_dice(g, p, "softmax", eps=0.0)
    assert float(d[0]) == pytest.approx(dice, rel=1e-6)
    assert float(loss[0]) == pytest.approx(1 - dice + ce, rel=1e-6)


def test_background_is_one_minus_any_class():
    g = np.zeros((1, 1, 3, 2), np.float32)
    g[0, 0, 1, 0] = 1
    g[0, 0, 2, 1] = 1
    np.testing.assert_array_equal(with_background(g).numpy()[0, 0],
                                  [[1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_the_output_picks_the_loss_family_and_the_sigmoid_loss_is_unchanged():
    classes = ((1,), (2,))
    assert isinstance(training_loss(None), DiceLoss)
    assert isinstance(training_loss(LabelRule(classes)), DiceLoss)
    assert not isinstance(training_loss(LabelRule(classes)), DiceCELoss)
    assert isinstance(training_loss(LabelRule(classes, mode="softmax"), eps=0.5), DiceCELoss)
    rng = np.random.default_rng(1)
    g = (rng.random((2, 4, 4, 2)) > 0.5).astype(np.float32)
    p = rng.random((2, 4, 4, 2)).astype(np.float32)
    loss, dice = loss_and_dice(g, p, "sigmoid")
    np.testing.assert_array_equal(loss.numpy(), DiceLoss().call(g, p).numpy())
    np.testing.assert_array_equal(dice.numpy(), 1.0 - loss.numpy())
    with pytest.raises(ValueError, match="output must be"):
        loss_and_dice(g, p, "tanh")


def test_selection_metric_of_a_softmax_scores_the_class_channels():
    """val_soft_dice: the soft Dice of channels 1..N (the loss's Dice term); with a threshold
    the hard Dice of the argmax labels."""
    rng = np.random.default_rng(2)
    g = exclusive_masks(rng, (2, 4, 4), 2)
    p = softmax_probs(rng, (2, 4, 4), 2)
    rule = LabelRule(((1,), (2,)), mode="softmax")
    metric = selection_metric(rule, eps=1.0)
    metric.update_state(g, p)
    _, want = np_softmax_loss(g, p, 1.0)
    assert float(metric.result()) == pytest.approx(float(want.mean()), rel=1e-6)
    hard = DiceCoefficient(eps=0.0, threshold=0.5, classes=rule.classes, label_mode="softmax")
    hard.update_state(g, p)
    labels = np.argmax(p, axis=-1)
    onehot = np.stack([labels == 1, labels == 2], axis=-1).astype(np.float64)
    inter = (onehot * g).sum(axis=(1, 2))
    den = onehot.sum(axis=(1, 2)) + g.sum(axis=(1, 2))
    per = np.where(den > 0, 2 * inter / np.where(den > 0, den, 1), 0.0)
    assert float(hard.result()) == pytest.approx(per.mean(axis=1).mean(), rel=1e-6)


def test_dice_ce_loss_serialises_and_trains(tmp_path):
    assert DiceCELoss.from_config(DiceCELoss(eps=0.25).get_config()).eps == 0.25
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp))
    model.compile("adam", loss=DiceCELoss(eps=0.5))
    x = np.random.default_rng(3).random((2, 4, 4, 1)).astype(np.float32)
    y = np.concatenate([x > 0.7, (x > 0.3) & (x <= 0.7)], axis=-1).astype(np.float32)
    history = model.fit(x, y, verbose=0, epochs=2)
    assert np.isfinite(history.history["loss"]).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, DiceCELoss) and loaded.loss.eps == 0.5


def test_dice_ce_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    g = exclusive_masks(rng, (1, 3, 3), 2)
    logits = tf.Variable(rng.normal(0, 1, (1, 3, 3, 3)))
    with tf.GradientTape() as tape:
        loss = loss_and_dice(g, tf.nn.softmax(tf.cast(logits, tf.float64)), "softmax")[0][0]
    grad = tape.gradient(loss, logits).numpy()
    base = logits.numpy()

    def value(z):
        return float(loss_and_dice(g, tf.nn.softmax(tf.constant(z)), "softmax")[0][0])

    h = 1e-2  # the loss computes in float32
    for idx in [(0, 0, 0, 0), (0, 1, 2, 1), (0, 2, 1, 2)]:
        up, down = base.copy(), base.copy()
        up[idx] += h
        down[idx] -= h
        assert grad[idx] == pytest.approx((value(up) - value(down)) / (2 * h), rel=1e-2, abs=1e-4)
    assert np.abs(grad).max() > 1e-3
