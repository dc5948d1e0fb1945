"""Probabilities -> label values: the one decision rule per label mode (exclusive classes,
nested regions, softmax), against NumPy references; TF twins == NumPy.

Covers: iac_tf/labels.py
"""

import numpy as np
import pytest

from iac_tf.labels import (METRICS, LabelRule, label_mode, labels_to_channels,
                                     labels_to_channels_tf, paint_values,
                                     probabilities_to_labels, probabilities_to_labels_tf,
                                     soft_channels, soft_channels_tf)

BRATS = ((1, 2, 3), (1, 3), (3,))  # WT, TC, ET
KITS = ((1, 2, 3), (2, 3), (2,))  # kidney+masses, masses, tumor
DISJOINT = ((1,), (2,), (3,))


@pytest.mark.parametrize("classes, expected", [
    (BRATS, [2, 1, 3]), (KITS, [1, 3, 2]), (DISJOINT, [1, 2, 3]), (((1, 2), (1,), (2,)), [1, 1, 2]),
])
def test_paint_values(classes, expected):
    assert paint_values(classes) == expected


@pytest.mark.parametrize("probs, expected", [
    ([0.9, 0.2, 0.1], 2),   # WT only: edema
    ([0.9, 0.8, 0.1], 1),   # WT + TC: necrosis
    ([0.9, 0.8, 0.7], 3),   # all three: enhancing
    ([0.2, 0.6, 0.1], 1),   # TC without WT still TC
    ([0.4, 0.3, 0.5], 0),   # none above 0.5 (0.5 is not above)
])
def test_brats_regions(probs, expected):
    assert probabilities_to_labels(np.array([probs]), BRATS)[0] == expected


def test_disjoint_classes_most_probable_wins_and_tf_agrees():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, (6, 7, 3)).astype(np.float32)
    labels = probabilities_to_labels(probs, DISJOINT)
    above = probs > 0.5
    expected = np.where(above.any(-1), np.argmax(np.where(above, probs, -1), -1) + 1, 0)
    np.testing.assert_array_equal(labels, expected)
    for classes in (DISJOINT, BRATS, KITS):
        np.testing.assert_array_equal(np.asarray(probabilities_to_labels_tf(probs, classes)),
                                      probabilities_to_labels(probs, classes))


def test_channel_count_mismatch():
    with pytest.raises(ValueError, match="2 probability channels for 3 classes"):
        probabilities_to_labels(np.zeros((2, 2)), BRATS)


# ------------------------------------------------------------------ the rule per label mode
# NumPy references written independently of iac_tf.labels.
AMOS_LIKE = ((1, 2), (3,), (4, 5))  # exclusive classes, some a union of two label values


def _ref_exclusive(probs, classes):
    """Most probable class where its probability is above 0.5, its smallest value; else 0."""
    best = np.argmax(probs, -1)
    top = np.take_along_axis(probs, best[..., None], -1)[..., 0]
    first = np.array([min(v) for v in classes])
    return np.where(top > 0.5, first[best], 0)


def _ref_nested(probs, classes, paint):
    """nnU-Net's region painting: regions from largest to smallest, each over the last."""
    out = np.zeros(probs.shape[:-1], int)
    for k in sorted(range(len(classes)), key=lambda k: -len(classes[k])):
        out[probs[..., k] > 0.5] = paint[k]
    return out


def _ref_channels(labels, classes):
    return np.stack([np.isin(labels, v) for v in classes], -1)


def test_label_mode_follows_from_the_classes():
    assert label_mode(DISJOINT) == label_mode(AMOS_LIKE) == "exclusive"
    assert label_mode(BRATS) == label_mode(KITS) == "regions"
    assert LabelRule(BRATS).mode == "regions" and LabelRule(AMOS_LIKE).mode == "exclusive"
    with pytest.raises(ValueError, match="share label values"):
        LabelRule(BRATS, mode="exclusive")
    with pytest.raises(ValueError, match="exclude each other"):
        LabelRule(KITS, mode="softmax")
    with pytest.raises(ValueError, match="metric must be one of"):
        LabelRule(DISJOINT, metric="channels")


def test_exclusive_classes_highest_probability_wins_whatever_their_size():
    """A voxel above 0.5 in a one-value and a two-value class: the more probable one wins (the
    region rule would take the class with fewer values)."""
    probs = np.array([[0.9, 0.7, 0.1], [0.6, 0.8, 0.2], [0.3, 0.2, 0.4], [0.55, 0.1, 0.95]],
                     np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(probs, AMOS_LIKE), [1, 3, 0, 4])
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 1, (5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(probs, AMOS_LIKE),
                                  _ref_exclusive(probs, AMOS_LIKE))


@pytest.mark.parametrize("classes, paint", [(BRATS, [2, 1, 3]), (KITS, [1, 3, 2])])
def test_nested_regions_painted_most_specific_last(classes, paint):
    rng = np.random.default_rng(2)
    probs = rng.uniform(0, 1, (7, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(probs, classes),
                                  _ref_nested(probs, classes, paint))


def test_softmax_outputs_argmax_with_background_first():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1, (4, 5, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    labels = probabilities_to_labels(probs, AMOS_LIKE, mode="softmax")
    np.testing.assert_array_equal(labels, np.array([0, 1, 3, 4])[np.argmax(probs, -1)])
    rule = LabelRule(AMOS_LIKE, mode="softmax")
    np.testing.assert_array_equal(rule.channels(probs), _ref_channels(labels, AMOS_LIKE))
    np.testing.assert_allclose(rule.soft_channels(probs), probs[..., 1:])
    with pytest.raises(ValueError, match="3 probability channels .*background"):
        probabilities_to_labels(probs[..., :3], AMOS_LIKE, mode="softmax")


@pytest.mark.parametrize("classes, mode", [(DISJOINT, None), (AMOS_LIKE, None), (BRATS, None),
                                           (KITS, None), (AMOS_LIKE, "softmax")])
def test_tf_twin_equals_numpy(classes, mode):
    rng = np.random.default_rng(4)
    n = len(classes) + (mode == "softmax")
    probs = rng.uniform(0, 1, (3, 8, 8, n)).astype(np.float32)
    probs[0, 0, 0] = 0.5  # exactly the threshold: not above it
    labels = probabilities_to_labels(probs, classes, mode)
    np.testing.assert_array_equal(np.asarray(probabilities_to_labels_tf(probs, classes, mode)),
                                  labels)
    np.testing.assert_array_equal(np.asarray(labels_to_channels_tf(labels, classes)),
                                  _ref_channels(labels, classes).astype(np.float32))
    for metric in METRICS:
        np.testing.assert_allclose(np.asarray(soft_channels_tf(probs, classes, mode, metric)),
                                   soft_channels(probs, classes, mode, metric), atol=1e-7)


def test_labels_to_channels_reference_and_foreign_values():
    labels = np.array([[0, 1, 2], [3, 7, 2]])
    np.testing.assert_array_equal(labels_to_channels(labels, BRATS), _ref_channels(labels, BRATS))
    assert not labels_to_channels(labels, KITS)[1, 1].any()  # 7 is in no class


@pytest.mark.parametrize("classes", [DISJOINT, AMOS_LIKE, BRATS, KITS])
def test_soft_channels_above_threshold_are_the_rule_channels(classes):
    """The soft Dice of the selection metric is a soft form of the label rule: its channels
    above 0.5 are exactly those of the label map."""
    rng = np.random.default_rng(5)
    probs = rng.uniform(0, 1, (6, 10, 10, 3)).astype(np.float32)
    rule = LabelRule(classes)
    np.testing.assert_array_equal(rule.soft_channels(probs) > 0.5, rule.channels(probs))
    np.testing.assert_array_equal(rule.channels(probs),
                                  _ref_channels(probabilities_to_labels(probs, classes), classes))
    paper = LabelRule(classes, metric="paper_channels")
    np.testing.assert_array_equal(paper.channels(probs), probs > 0.5)
    np.testing.assert_array_equal(paper.soft_channels(probs), probs)
    assert paper.labels(probs).tolist() == rule.labels(probs).tolist()  # labels: always the rule


def test_exclusive_soft_channels_keep_only_the_most_probable_class():
    probs = np.array([[0.9, 0.8, 0.1], [0.3, 0.4, 0.2]], np.float32)
    np.testing.assert_allclose(LabelRule(DISJOINT).soft_channels(probs),
                               [[0.9, 0, 0], [0, 0.4, 0]])
    np.testing.assert_allclose(LabelRule(BRATS).soft_channels(np.array([[0.2, 0.3, 0.9]])),
                               [[0.9, 0.9, 0.9]])  # a region is at least as probable as inside it


def test_masks_in_two_exclusive_classes_are_refused():
    masks = np.zeros((2, 3, 3, 3), np.float32)
    masks[0, 1, 1, :2] = 1
    with pytest.raises(ValueError, match="val masks: a voxel belongs to two classes"):
        LabelRule(DISJOINT).check_masks(masks, "val masks")
    LabelRule(BRATS).check_masks(masks)  # regions overlap by definition
    LabelRule(DISJOINT, metric="paper_channels").check_masks(masks)
