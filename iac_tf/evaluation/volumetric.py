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
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from iac_tf.evaluation.metrics import confusion_counts, dice_from_counts


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-connected (face) neighbour outside it (borders count)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1),
                                    border_value=0)
    return mask & ~eroded


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """HD95 in mm of two binary volumes (the module docstring's rule for empty masks)."""
    from scipy import ndimage

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
        from iac_tf.data.datasets import _json_classes

        classes = _json_classes(pathlib.Path(dataset_json).parent, "regions")
        return list(classes.names), [tuple(v) for v in classes.values]
    values = sorted(v for v in values if v != 0)
    return [str(v) for v in values], [(v,) for v in values]


def evaluate_folder(pred_dir: str | pathlib.Path, gt_dir: str | pathlib.Path,
                    dataset_json: str | pathlib.Path | None = None, out_dir=None,
                    progress: bool = True) -> dict:
    """Score every ``CASE.nii[.gz]`` of ``gt_dir`` against ``pred_dir/CASE.nii[.gz]``; write
    ``volumetric_per_case.csv`` (case, class, dice, hd95_mm) and ``volumetric_summary.json``
    (per class: mean/median Dice and HD95, n, n_empty) to ``out_dir`` (default ``pred_dir``).

    Raises:
        ValueError: a missing prediction, or a prediction whose grid differs from the ground
            truth (both files named).
    """
    import nibabel as nib
    from tqdm.auto import tqdm

    from iac_tf.data.nifti import AFFINE_TOLERANCE
    from iac_tf.files import atomic_write_json, atomic_write_text

    pred_dir, gt_dir = pathlib.Path(pred_dir), pathlib.Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: folder not found")
    gts = sorted(p for p in gt_dir.iterdir() if p.name.endswith((".nii.gz", ".nii")))
    if not gts:
        raise ValueError(f"{gt_dir}: no ground-truth NIfTI files")
    pairs = []
    for gt in gts:
        case = gt.name.split(".nii")[0]
        pred = next((pred_dir / f"{case}{e}" for e in (".nii.gz", ".nii")
                     if (pred_dir / f"{case}{e}").is_file()), None)
        if pred is None:
            raise ValueError(f"{pred_dir / (case + '.nii.gz')}: no prediction for {gt}")
        pairs.append((case, pred, gt))
    loaded = []
    values: set[int] = set()
    for case, pred, gt in tqdm(pairs, desc="reading", unit="case", disable=not progress):
        g_img, p_img = nib.load(str(gt)), nib.load(str(pred))
        if g_img.shape != p_img.shape:
            raise ValueError(f"{pred}: shape {p_img.shape} differs from {gt} {g_img.shape}")
        if not np.allclose(g_img.affine, p_img.affine, atol=AFFINE_TOLERANCE):
            raise ValueError(f"{pred}: affine differs from {gt}")
        g = np.asarray(g_img.dataobj).round().astype(np.int32)
        p = np.asarray(p_img.dataobj).round().astype(np.int32)
        values |= set(np.unique(g).tolist()) | set(np.unique(p).tolist())
        loaded.append((case, p, g, tuple(float(z) for z in g_img.header.get_zooms()[:3])))
    names, classes = label_classes(values, dataset_json)
    rows = []
    for case, p, g, spacing in tqdm(loaded, desc="scoring", unit="case", disable=not progress):
        for name, (dice, dist) in zip(names, score_case(p, g, classes, spacing)):
            rows.append({"case": case, "class": name, "dice": dice, "hd95_mm": dist})
    summary = summarise(rows, names)
    out_dir = pathlib.Path(out_dir) if out_dir else pred_dir
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case", "class", "dice", "hd95_mm"])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out_dir / "volumetric_per_case.csv", buf.getvalue())
    atomic_write_json(out_dir / "volumetric_summary.json", summary)
    return summary


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
    lines = [f"{'class':<20}{'n':>4}{'Dice mean':>11}{'Dice med':>10}{'HD95 mm':>10}"
             f"{'HD95 med':>10}"]
    for name, s in summary.items():
        lines.append(f"{name:<20}{s['n']:>4}{s['dice_mean']:>11.4f}{s['dice_median']:>10.4f}"
                     f"{s['hd95_mm_mean']:>10.2f}{s['hd95_mm_median']:>10.2f}")
    return "\n".join(lines)
