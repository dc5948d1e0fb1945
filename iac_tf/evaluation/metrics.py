"""Hard Dice per case and class, nnU-Net style: pure NumPy on binarised predictions.

The predictions are binarised by the dataset's decision rule
(:class:`iac_tf.labels.LabelRule`): the channels of its label map (``labels``, one
label per voxel) or every channel thresholded alone (``paper_channels``; also what happens
without a rule). A case's Dice for class ``c`` is computed over all its slices together (its 2D slices form the
volume): ``2 TP / (2 TP + FP + FN)``. Where a class is absent from both the ground truth and the
prediction of a case the score is undefined (NaN) and left out of means, as nnU-Net does; an
absent class that the model predicts anyway scores 0.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from iac_tf.labels import LabelRule


def confusion_counts(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN per class (last axis) of binary arrays of equal shape ``(..., N)``."""
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: ground truth {gt.shape} vs prediction {pred.shape}")
    axes = tuple(range(gt.ndim - 1))
    tp = np.sum(gt & pred, axis=axes)
    fp = np.sum(~gt & pred, axis=axes)
    fn = np.sum(gt & ~pred, axis=axes)
    return tp, fp, fn


def dice_from_counts(tp, fp, fn) -> np.ndarray:
    """``2TP / (2TP + FP + FN)``; NaN where the denominator is 0 (class absent in both)."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def predicted_channels(probs: np.ndarray, rule: LabelRule | None = None,
                       threshold: float = 0.5) -> np.ndarray:
    """The binary channels ``(..., N)`` a hard Dice scores: ``rule.channels(probs)``, or
    without a rule every channel above ``threshold`` (the paper's protocol)."""
    if rule is None:
        return np.asarray(probs) > threshold
    return rule.channels(probs)


def case_dice(masks: np.ndarray, probs: np.ndarray, case_ids, rule: LabelRule | None = None,
              threshold: float = 0.5) -> "OrderedDict[str, np.ndarray]":
    """Dice per case (over its slices) and class: ``{case_id: array (N,)}`` in first-seen order.

    ``rule``: how probabilities become the scored channels (:func:`predicted_channels`);
    ``None``: each channel above ``threshold`` on its own.

    Raises:
        ValueError: ``case_ids`` and ``masks`` differ in length; masks with a voxel in two
            classes under a rule of exclusive classes (:meth:`LabelRule.check_masks`).
    """
    masks = np.asarray(masks)
    case_ids = np.asarray(case_ids)
    if len(case_ids) != len(masks):
        raise ValueError(f"{len(case_ids)} case ids for {len(masks)} slices")
    if rule is not None:
        rule.check_masks(masks)
    pred = predicted_channels(probs, rule, threshold)
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for case in dict.fromkeys(case_ids.tolist()):
        sel = case_ids == case
        out[str(case)] = dice_from_counts(*confusion_counts(masks[sel], pred[sel]))
    return out


def mean_case_dice(masks: np.ndarray, probs: np.ndarray, case_ids,
                   rule: LabelRule | None = None, threshold: float = 0.5) -> float:
    """The reported score in one number: the mean over cases of each case's mean Dice over the
    classes present in it (cases where every class is undefined are left out; NaN if all are)."""
    per_case = [d[~np.isnan(d)] for d in case_dice(masks, probs, case_ids, rule, threshold).values()]
    means = [float(d.mean()) for d in per_case if d.size]
    return float(np.mean(means)) if means else float("nan")
