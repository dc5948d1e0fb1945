"""Probabilities -> label values: the documented rule for overlapping regions, NumPy == TF."""

import numpy as np
import pytest

from iac_tf.inference.labels import (paint_values, probabilities_to_labels,
                                     probabilities_to_labels_tf)

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
