"""Volumetric scores of label NIfTIs against ground truth, per case and class, on the original
grid: Dice and the 95th-percentile Hausdorff distance (HD95) in millimetres.

HD95 (as MedPy / the BraTS challenge): the surface of a mask is its voxels with a 6-connected
background neighbour (``mask & ~erosion(mask)``); the distances (Euclidean, in mm from the
voxel spacing of the ground-truth header) from every surface voxel of the prediction to the
nearest surface voxel of the ground truth and back are pooled, and HD95 is their 95th percentile.

Empty masks, one rule (our choice, consistent with the slice Dice of
:mod:`iac_tf.evaluation.metrics` and nnU-Net):
- class absent from both the ground truth and the prediction: Dice and HD95 are NaN, the case is
  left out of that class's means (counted as ``n_empty`` in the summary);
- class present in exactly one of them: Dice 0 and HD95 = the diagonal of the volume in mm (the
  largest distance possible on that grid), so a missed or hallucinated structure is penalised.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import pathlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from iac_tf.data.config import DataError
from iac_tf.data.datasets import _json_classes
from iac_tf.data.nifti import AFFINE_TOLERANCE
from iac_tf.diskspace import check_writable_folder
from iac_tf.errors import UserError
from iac_tf.evaluation.metrics import confusion_counts, dice_from_counts
from iac_tf.files import (atomic_write_json, atomic_write_text, check_new_or_ours,
                          check_outside_runs)


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-connected (face) neighbour outside it (borders count)."""
    mask = np.asarray(mask, bool)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1),
                                    border_value=0)
    return mask & ~eroded


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """HD95 in mm of two binary volumes (the module docstring's rule for empty masks)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
    if not pred.any() and not gt.any():
        return math.nan
    if not pred.any() or not gt.any():
        return volume_diagonal(gt.shape, spacing)
    sp, sg = surface(pred), surface(gt)
    to_gt = ndimage.distance_transform_edt(~sg, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    distances = np.concatenate([to_gt[sp], to_pred[sg]])
    return float(np.percentile(distances, 95))


def volume_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def score_case(pred: np.ndarray, gt: np.ndarray, classes: Sequence[Sequence[int]],
               spacing: Sequence[float]) -> list[tuple[float, float]]:
    """``[(dice, hd95_mm)]`` per class; class ``k`` is the union of label values ``classes[k]``."""
    out = []
    for values in classes:
        p, g = np.isin(pred, list(values)), np.isin(gt, list(values))
        dice = float(dice_from_counts(*confusion_counts(g[..., None], p[..., None]))[0])
        out.append((dice, hd95(p, g, spacing)))
    return out


def label_classes(values: set[int], dataset_json: str | pathlib.Path | None
                  ) -> tuple[list[str], list[tuple[int, ...]]]:
    """Class names and label values: the regions of ``dataset_json`` (nnU-Net labels, unions for
    region lists) or, without it, one class per foreground value found in the ground truth or
    the predictions."""
    if dataset_json:
        classes = _json_classes(pathlib.Path(dataset_json).parent, "regions")
        return list(classes.names), [tuple(v) for v in classes.values]
    values = sorted(v for v in values if v != 0)
    return [str(v) for v in values], [(v,) for v in values]


#: Keys of the summary that are not classes.
LEFT_OUT = "cases_left_out"
UNEXPECTED = "unexpected_label_values"
NOT_CLASSES = (LEFT_OUT, UNEXPECTED)
NIFTI_ENDINGS = (".nii.gz", ".nii")


def _nifti_cases(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """``{CASE: file}`` of the ``CASE.nii[.gz]`` files of ``folder`` (.nii.gz first)."""
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: (not p.name.endswith(".gz"), p.name)):
        if path.is_file() and path.name.endswith(NIFTI_ENDINGS):
            found.setdefault(path.name.split(".nii")[0], path)
    return found


def _read_labels(path: pathlib.Path):
    """``(image, int32 labels)`` of a label NIfTI read whole; errors name the file."""
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as exc:  # truncated gzip (EOFError), zlib.error, not a NIfTI ...
        raise DataError(f"{path}: cannot read the whole volume, the file is truncated, corrupt "
                        f"or not a NIfTI ({type(exc).__name__}: {exc}); nothing was "
                        "written") from exc
    if np.issubdtype(data.dtype, np.inexact):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise DataError(f"{path}: {bad} NaN/inf voxels in a label volume; nothing was "
                            "written")
        data = data.round()
    return img, data.astype(np.int32)


def evaluate_folder(pred_dir: str | pathlib.Path, gt_dir: str | pathlib.Path,
                    dataset_json: str | pathlib.Path | None = None, out_dir=None,
                    progress: bool = True) -> dict:
    """Score every case that has both ``gt_dir/CASE.nii[.gz]`` and ``pred_dir/CASE.nii[.gz]``;
    write ``volumetric_per_case.csv`` (case, class, dice, hd95_mm) and
    ``volumetric_summary.json`` (per class: mean/median Dice and HD95, n, n_empty) to
    ``out_dir`` (default ``pred_dir``).

    Cases with only a prediction or only a ground truth are left out of the scores, and label
    values that are not among ``dataset_json``'s labels are ignored: each gives one warning
    line and is listed in the summary (``cases_left_out``: ``predictions_without_ground_truth``,
    ``ground_truth_without_prediction``; ``unexpected_label_values``: per case, the values found
    in its ``prediction`` / ``ground_truth``). ``CASE_probabilities`` files of ``iac predict``
    beside ``CASE`` are not predictions. The output folder is checked first and every file is
    read whole before anything is written.

    Raises:
        ValueError: no case has both files, a file that cannot be read whole (truncated,
            corrupt), or a prediction whose grid differs from the ground truth (both named).
        OSError: ``out_dir`` cannot be written.
    """
    log = logging.getLogger(__name__)
    pred_dir, gt_dir = pathlib.Path(pred_dir), pathlib.Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: folder not found")
    out_dir = pathlib.Path(out_dir) if out_dir else pred_dir
    check_writable_folder(out_dir, "the volumetric scores", "--out")
    check_score_outputs(out_dir)
    gts = _nifti_cases(gt_dir)
    if not gts:
        raise UserError(f"{gt_dir}: no ground-truth NIfTI files")
    preds = _nifti_cases(pred_dir)
    preds = {c: p for c, p in preds.items()
             if not (c.endswith("_probabilities") and c not in gts
                     and c[: -len("_probabilities")] in preds)}
    cases = sorted(set(gts) & set(preds))
    left_out = {"predictions_without_ground_truth": sorted(set(preds) - set(gts)),
                "ground_truth_without_prediction": sorted(set(gts) - set(preds))}
    if not cases:
        raise UserError(f"{pred_dir}: no prediction has a ground truth of the same case name in "
                         f"{gt_dir} (CASE.nii.gz in both folders); nothing was written")
    expected = None
    if dataset_json:
        names, classes = label_classes(set(), dataset_json)
        expected = {0} | {v for values in classes for v in values}
    loaded = []
    values: set[int] = set()
    unexpected: dict[str, dict[str, list[int]]] = {}
    for case in tqdm(cases, desc="reading", unit="case", disable=not progress):
        gt, pred = gts[case], preds[case]
        g_img, g = _read_labels(gt)
        p_img, p = _read_labels(pred)
        if g.shape != p.shape:
            raise UserError(f"{pred}: shape {p.shape} differs from {gt} {g.shape}")
        if not np.allclose(g_img.affine, p_img.affine, atol=AFFINE_TOLERANCE):
            raise UserError(f"{pred}: affine differs from {gt}")
        found = {"prediction": set(np.unique(p).tolist()),
                 "ground_truth": set(np.unique(g).tolist())}
        values |= found["prediction"] | found["ground_truth"]
        if expected is not None:
            odd = {k: sorted(v - expected) for k, v in found.items() if v - expected}
            if odd:
                unexpected[case] = odd
        loaded.append((case, p, g, tuple(float(z) for z in g_img.header.get_zooms()[:3])))
    if expected is None:
        names, classes = label_classes(values, dataset_json)
    for key, text in (("predictions_without_ground_truth", "predictions without ground truth"),
                      ("ground_truth_without_prediction", "ground truth without prediction")):
        if left_out[key]:
            log.warning(f"{len(left_out[key])} case(s) left out of the scores, {text}: "
                        f"{', '.join(left_out[key])}")
    if unexpected:
        log.warning(f"label values not in {dataset_json}'s labels are ignored in "
                    f"{len(unexpected)} case(s): {_format_unexpected(unexpected)}")
    rows = []
    for case, p, g, spacing in tqdm(loaded, desc="scoring", unit="case", disable=not progress):
        for name, (dice, dist) in zip(names, score_case(p, g, classes, spacing)):
            rows.append({"case": case, "class": name, "dice": dice, "hd95_mm": dist})
    summary = summarise(rows, names)
    summary[LEFT_OUT] = left_out
    summary[UNEXPECTED] = unexpected
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case", "class", "dice", "hd95_mm"])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out_dir / SCORE_FILES[0], buf.getvalue(), what="a score file")
    atomic_write_json(out_dir / SCORE_FILES[1], summary, what="a score file")
    return summary


#: The files ``evaluate_folder`` writes into its output folder.
SCORE_FILES = ("volumetric_per_case.csv", "volumetric_summary.json")


def check_score_outputs(out_dir: pathlib.Path) -> None:
    """Before any work: the output folder is not in a run (a run's scores are its own
    commands'), and each score file there is new or one this command wrote, unchanged since
    (:func:`iac_tf.files.check_target`)."""
    check_outside_runs(out_dir, "evaluate-folder's scores", "another --out", holds=False)
    for name in SCORE_FILES:
        check_new_or_ours(out_dir / name, "a score file",
                          "Nothing was read or written; move it away or choose another --out")


def _format_unexpected(unexpected: dict) -> str:
    """``c1 (prediction: 7), c2 (ground truth: 5, 9)``."""
    return ", ".join(
        f"{case} (" + "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v))}"
                                for k, v in found.items()) + ")"
        for case, found in unexpected.items())


def summarise(rows: list[dict], names: Sequence[str]) -> dict:
    """Per class: mean/median Dice and HD95 over the cases where the class is present in the
    ground truth or the prediction (NaN rows are the both-empty cases)."""
    out = {}
    for name in names:
        dice = np.array([r["dice"] for r in rows if r["class"] == name], float)
        dist = np.array([r["hd95_mm"] for r in rows if r["class"] == name], float)
        ok = ~np.isnan(dice)
        out[name] = {
            "n": int(ok.sum()), "n_empty": int((~ok).sum()),
            "dice_mean": float(dice[ok].mean()) if ok.any() else math.nan,
            "dice_median": float(np.median(dice[ok])) if ok.any() else math.nan,
            "hd95_mm_mean": float(dist[ok].mean()) if ok.any() else math.nan,
            "hd95_mm_median": float(np.median(dist[ok])) if ok.any() else math.nan,
        }
    return out


def format_summary(summary: dict) -> str:
    """The per-class table, then the cases left out and the unexpected label values (if any)."""
    lines = [f"{'class':<20}{'n':>4}{'Dice mean':>11}{'Dice med':>10}{'HD95 mm':>10}"
             f"{'HD95 med':>10}"]
    for name, s in summary.items():
        if name in NOT_CLASSES:
            continue
        lines.append(f"{name:<20}{s['n']:>4}{s['dice_mean']:>11.4f}{s['dice_median']:>10.4f}"
                     f"{s['hd95_mm_mean']:>10.2f}{s['hd95_mm_median']:>10.2f}")
    for key, cases in (summary.get(LEFT_OUT) or {}).items():
        if cases:
            lines.append(f"left out, {key.replace('_', ' ')}: {', '.join(cases)}")
    if summary.get(UNEXPECTED):
        lines.append(f"ignored label values: {_format_unexpected(summary[UNEXPECTED])}")
    return "\n".join(lines)
