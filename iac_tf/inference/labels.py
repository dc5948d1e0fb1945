"""Per-class probabilities -> one label map, with the dataset's label values (``dataset.json``).

The models have one sigmoid per class ``k`` and class ``k`` is the union of label values
``V_k`` (:class:`iac_tf.data.datasets.Classes`); classes may overlap (BraTS WT={1,2,3},
TC={1,3}, ET={3}; KiTS kidney+masses={1,2,3}, masses={2,3}, tumor={2}). The documented rule
(see docs/decisions.md, "Label maps from overlapping regions"):

1. a voxel is foreground for class ``k`` when ``p_k > threshold`` (0.5);
2. among its foreground classes the one with the fewest label values wins (the most specific
   region: ET inside TC inside WT); between equally specific classes the higher probability
   wins (first class on exact ties);
3. the winner ``k`` writes ``paint(k)``: the smallest value of ``V_k`` that no smaller class
   contained in ``V_k`` claims (WT -> 2, TC -> 1, ET -> 3; kidney -> 1, masses -> 3, tumor -> 2);
   ``min(V_k)`` if they claim all of them;
4. no foreground class: 0 (background).

For nested regions this is nnU-Net's region painting (``regions_class_order``: paint the regions
from largest to smallest); for disjoint classes it is the most probable class above threshold.
The TensorFlow version (used by the exported SavedModel) computes the same key, so both agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = 0.5  # our choice: the same 0.5 as the slice Dice (iac_tf.evaluation.metrics)


def paint_values(classes: Sequence[Sequence[int]]) -> list[int]:
    """``paint(k)`` of every class (rule 3 of the module docstring)."""
    sets = [frozenset(int(v) for v in vals) for vals in classes]
    out = []
    for k, own in enumerate(sets):
        claimed = set()
        for j, other in enumerate(sets):
            if j != k and other < own:  # a strictly smaller region inside this one
                claimed |= other
        free = sorted(own - claimed)
        out.append(free[0] if free else min(own))
    return out


def winner_key(probs: np.ndarray, classes: Sequence[Sequence[int]],
               threshold: float = THRESHOLD) -> np.ndarray:
    """``p_k - 2 |V_k|`` where ``p_k > threshold``, else ``-inf`` (rules 1-2: ``|V_k|`` steps of
    2 dominate any probability difference); the argmax over the last axis is the winner."""
    sizes = np.array([len(set(v)) for v in classes], np.float32)
    probs = np.asarray(probs, np.float32)
    return np.where(probs > threshold, probs - 2.0 * sizes, -np.inf).astype(np.float32)


def probabilities_to_labels(probs: np.ndarray, classes: Sequence[Sequence[int]],
                            threshold: float = THRESHOLD) -> np.ndarray:
    """Label map ``(...)`` of probabilities ``(..., N)`` (the module docstring's rule)."""
    probs = np.asarray(probs)
    if probs.shape[-1] != len(classes):
        raise ValueError(f"{probs.shape[-1]} probability channels for {len(classes)} classes")
    key = winner_key(probs, classes, threshold)
    winner = np.argmax(key, axis=-1)
    any_fg = np.isfinite(np.max(key, axis=-1))
    values = np.asarray(paint_values(classes))
    dtype = np.uint8 if values.max(initial=0) < 256 else np.int16
    return np.where(any_fg, values[winner], 0).astype(dtype)


def probabilities_to_labels_tf(probs, classes: Sequence[Sequence[int]],
                               threshold: float = THRESHOLD):
    """:func:`probabilities_to_labels` in TensorFlow (int32 labels), for the serving signature."""
    from iac_tf._keras import tf  # noqa: PLC0415 - keeps iac_tf.inference.labels TensorFlow-free

    probs = tf.cast(probs, tf.float32)
    sizes = tf.constant([len(set(v)) for v in classes], tf.float32)
    key = tf.where(probs > threshold, probs - 2.0 * sizes,
                   tf.fill(tf.shape(probs), tf.constant(-np.inf, tf.float32)))
    winner = tf.argmax(key, axis=-1, output_type=tf.int32)
    values = tf.constant(paint_values(classes), tf.int32)
    any_fg = tf.math.is_finite(tf.reduce_max(key, axis=-1))
    return tf.where(any_fg, tf.gather(values, winner), tf.zeros_like(winner))
