"""Volumetric scores of label NIfTIs against ground truth, per case and class, on the original
grid, as nnU-Net's ``nnUNetv2_evaluate_folder`` plus surface metrics: Dice, IoU, precision,
recall, TP/FP/FN voxel counts, normalised surface Dice (NSD) at a tolerance in mm and the
95th-percentile Hausdorff distance (HD95) in mm.

Surfaces (MedPy, BraTS and MONAI's ``get_mask_edges``): the surface of a mask is its voxels with a
6-connected background neighbour (``mask & ~erosion(mask)``, outside the volume counts as
background); distances are Euclidean in mm from the voxel spacing of the ground-truth header.
- HD95: the distances from every surface voxel of the prediction to the nearest surface voxel
  of the ground truth and back are pooled; HD95 is their 95th percentile.
- NSD (MONAI's ``SurfaceDiceMetric``): the fraction of the surface voxels of both masks whose
  distance to the other mask's surface is at most the tolerance:
  ``(|{p in S_P: d(p, S_G) <= tol}| + |{g in S_G: d(g, S_P) <= tol}|) / (|S_P| + |S_G|)``.
- Dice ``2TP / (2TP + FP + FN)``, IoU ``TP / (TP + FP + FN)``, precision ``TP / (TP + FP)``,
  recall ``TP / (TP + FN)``, counted in voxels (nnU-Net's ``compute_tp_fp_fn_tn``).

Empty masks, one rule (our choice, consistent with the slice Dice of
:mod:`iac_tf.evaluation.metrics`, nnU-Net and MONAI):
- class absent from both the ground truth and the prediction: Dice, IoU, NSD and HD95 are NaN,
  the case is left out of that class's means (counted as ``n_empty`` in the summary);
- class present in exactly one of them: Dice, IoU and NSD 0 and HD95 = the diagonal of the
  volume in mm (the largest distance possible on that grid), so a missed or hallucinated
  structure is penalised;
- precision is NaN where nothing is predicted, recall where the ground truth is empty (0 / 0);
  means leave NaN out.
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

from iac_tf.data.datasets import _json_classes
from iac_tf.data.nifti import AFFINE_TOLERANCE, is_prediction
from iac_tf.diskspace import check_writable_folder
from iac_tf.errors import DataError, UserError
from iac_tf.evaluation.metrics import confusion_counts, dice_from_counts
from iac_tf.run_layout import VOLUMETRIC_CSV, VOLUMETRIC_SUMMARY, check_outside_runs
from iac_tf.files import RefusedPath, atomic_write_json, atomic_write_text, check_new_or_ours

log = logging.getLogger(__name__)

#: ``--nsd-tolerance`` default, mm (our choice; MONAI has none, papers use 1-5 mm by organ).
NSD_TOLERANCE = 1.0
#: Per case and class, in the CSV's column order.
METRICS = ("dice", "iou", "precision", "recall", "nsd", "hd95_mm")
COUNTS = ("tp", "fp", "fn")


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-connected (face) neighbour outside it (borders count)."""
    mask = np.asarray(mask, bool)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1),
                                    border_value=0)
    return mask & ~eroded


def surface_distances(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(d(S_P -> S_G), d(S_G -> S_P))`` in mm: for every surface voxel of ``pred`` the distance
    to the nearest surface voxel of ``gt``, and back (both masks non-empty)."""
    sp, sg = surface(pred), surface(gt)
    to_gt = ndimage.distance_transform_edt(~sg, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return to_gt[sp], to_pred[sg]


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
    return pred, gt


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """HD95 in mm of two binary volumes (the module docstring's rule for empty masks)."""
    return _surface_scores(*_check_pair(pred, gt), spacing, None)[1]


def normalised_surface_dice(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float],
                            tolerance: float = NSD_TOLERANCE) -> float:
    """NSD of two binary volumes at ``tolerance`` mm (MONAI's ``SurfaceDiceMetric``; the module
    docstring's rule for empty masks)."""
    return _surface_scores(*_check_pair(pred, gt), spacing, tolerance)[0]


def _surface_scores(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float],
                    tolerance: float | None) -> tuple[float, float]:
    """``(nsd, hd95_mm)`` from one pair of distance transforms (NSD NaN if ``tolerance`` is
    ``None``)."""
    if not pred.any() and not gt.any():
        return math.nan, math.nan
    if not pred.any() or not gt.any():
        return 0.0, volume_diagonal(gt.shape, spacing)
    d_pg, d_gp = surface_distances(pred, gt, spacing)
    nsd = math.nan
    if tolerance is not None:
        nsd = float((np.sum(d_pg <= tolerance) + np.sum(d_gp <= tolerance))
                    / (d_pg.size + d_gp.size))
    return nsd, float(np.percentile(np.concatenate([d_pg, d_gp]), 95))


def volume_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def class_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float],
                  nsd_tolerance: float = NSD_TOLERANCE) -> dict:
    """Every metric of :data:`METRICS` and :data:`COUNTS` of two binary volumes."""
    pred, gt = _check_pair(pred, gt)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    nsd, dist = _surface_scores(pred, gt, spacing, nsd_tolerance)
    return {"dice": _ratio(2 * tp, 2 * tp + fp + fn), "iou": _ratio(tp, tp + fp + fn),
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "nsd": nsd,
            "hd95_mm": dist, "tp": tp, "fp": fp, "fn": fn}


def case_metrics(pred: np.ndarray, gt: np.ndarray, classes: Sequence[Sequence[int]],
                 spacing: Sequence[float], nsd_tolerance: float = NSD_TOLERANCE) -> list[dict]:
    """:func:`class_metrics` per class; class ``k`` is the union of label values
    ``classes[k]``."""
    return [class_metrics(np.isin(pred, list(values)), np.isin(gt, list(values)), spacing,
                          nsd_tolerance) for values in classes]


def score_case(pred: np.ndarray, gt: np.ndarray, classes: Sequence[Sequence[int]],
               spacing: Sequence[float]) -> list[tuple[float, float]]:
    """``[(dice, hd95_mm)]`` per class; class ``k`` is the union of label values ``classes[k]``."""
    return score_channels(np.stack([np.isin(pred, list(v)) for v in classes], axis=-1), gt,
                          classes, spacing)


def score_channels(pred: np.ndarray, gt: np.ndarray, classes: Sequence[Sequence[int]],
                   spacing: Sequence[float]) -> list[tuple[float, float]]:
    """:func:`score_case` of binary predicted channels ``(X, Y, Z, N)`` (e.g. each output
    channel thresholded alone, ``evaluation.metric: paper_channels``) against a label volume."""
    out = []
    for k, values in enumerate(classes):
        p, g = np.asarray(pred[..., k], bool), np.isin(gt, list(values))
        dice = float(dice_from_counts(*confusion_counts(g[..., None], p[..., None]))[0])
        out.append((dice, hd95(p, g, spacing)))
    return out


def find_dataset_json(gt_dir: pathlib.Path) -> pathlib.Path | None:
    """``dataset.json`` in the ground-truth folder or beside it (nnU-Net: ``labelsTr/`` next to
    ``dataset.json``), or ``None``."""
    for folder in (gt_dir, gt_dir.parent):
        if (folder / "dataset.json").is_file():
            return folder / "dataset.json"
    return None


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


#: Keys of ``volumetric_summary.json`` (:func:`volumetric_summary`).
SCHEMA = "schema"
LEFT_OUT = "cases_left_out"
UNEXPECTED = "unexpected_label_values"
FOREGROUND = "foreground_mean"
TOLERANCE = "nsd_tolerance_mm"
#: ``volumetric_summary.json``'s schema version (raised when its keys change)
SUMMARY_SCHEMA = 1
#: the cases ``iac evaluate-folder`` leaves out of the scores, by reason
LEFT_OUT_KEYS = ("predictions_without_ground_truth", "ground_truth_without_prediction")
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


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_folder_roles(gt_dir: pathlib.Path, pred_dir: pathlib.Path, out_dir: pathlib.Path,
                       gts: dict[str, pathlib.Path], preds: dict[str, pathlib.Path],
                       pred_by_position: bool) -> None:
    """Refuse folders in the wrong roles, before anything is read whole or written: one folder
    in both roles; a ground-truth folder holding files ``iac predict`` wrote (its header tag,
    :func:`iac_tf.data.nifti.is_prediction`); when PRED was given by position, a prediction
    folder holding none (two positional folders are in nnU-Net's order ``GT PRED``; given by
    ``--pred``, predictions of other tools are scored); results written into the ground-truth
    folder or below it."""
    order = ("the order is nnU-Net's: iac evaluate-folder GT PRED, or name the folders: "
             "--gt GT --pred PRED")
    if pred_dir.resolve() == gt_dir.resolve():
        raise RefusedPath(f"{gt_dir}: given as both the ground truth and the predictions; "
                          f"nothing was written ({order})")
    ours = [path.name for path in gts.values() if is_prediction(path)]
    if ours:
        raise RefusedPath(f"{gt_dir}: the ground-truth folder holds predictions written by iac "
                          f"predict ({', '.join(ours[:3])}{', ...' if len(ours) > 3 else ''}); "
                          f"are the folders swapped? Nothing was written; {order}")
    if pred_by_position and not any(is_prediction(path) for path in preds.values()):
        raise RefusedPath(f"{pred_dir}: given as PRED but holds no prediction written by iac "
                          f"predict (its files lack the tool's header tag); nothing was written. "
                          f"If {pred_dir} is the ground truth, swap the folders (nnU-Net's order "
                          "GT PRED); for predictions of another tool name the folders: --gt GT "
                          "--pred PRED")
    if _inside(out_dir, gt_dir):
        raise RefusedPath(f"{out_dir}: inside the ground-truth folder {gt_dir}; results are "
                          "never written there, nothing was written. Give --out a folder "
                          "outside it")


def evaluate_folder(*, gt: str | pathlib.Path, pred: str | pathlib.Path,
                    dataset_json: str | pathlib.Path | None = None,
                    out: str | pathlib.Path | None = None,
                    nsd_tolerance: float = NSD_TOLERANCE, pred_by_position: bool = False,
                    progress: bool = True) -> dict:
    """Score every case that has both ``gt/CASE.nii[.gz]`` and ``pred/CASE.nii[.gz]``; write
    ``volumetric_per_case.csv`` (a run's schema, :func:`write_per_case`: ``split`` empty,
    ``metric`` ``labels``, case, class, then ``pred_<metric>`` for :data:`METRICS` and
    :data:`COUNTS`) and
    ``volumetric_summary.json`` (:func:`volumetric_summary`, a run's schema: one model,
    :data:`FOLDER_MODEL`; per class the mean and median of every metric, the summed and mean
    counts, ``n``, ``n_empty``; ``foreground_mean``: the mean over the classes of each class
    mean, as nnU-Net's; ``nsd_tolerance_mm``) to ``out`` (default ``pred``; never inside
    ``gt``), and return that summary. Keyword-only, so a call cannot swap the folders by
    position.

    Classes: the regions of ``dataset_json`` (default: a ``dataset.json`` in ``gt`` or beside
    it), else one class per label value found. Folder roles are checked first
    (:func:`check_folder_roles`; ``pred_by_position``: PRED came from the command line's
    position, so it must hold predictions of ``iac predict``).

    Cases with only a prediction or only a ground truth are left out of the scores, and label
    values that are not among ``dataset_json``'s labels are ignored: each gives one warning
    line and is listed in the summary (``cases_left_out``: ``predictions_without_ground_truth``,
    ``ground_truth_without_prediction``; ``unexpected_label_values``: per case, the values found
    in its ``prediction`` / ``ground_truth``). ``CASE_probabilities`` files of ``iac predict``
    beside ``CASE`` are not predictions. The output folder is checked first and every file is
    read whole before anything is written.

    Raises:
        UserError: no case has both files, a file that cannot be read whole (truncated,
            corrupt), a prediction whose grid differs from the ground truth (both named),
            folders in the wrong roles (:class:`~iac_tf.files.RefusedPath`), a negative
            ``nsd_tolerance``.
        OSError: ``out`` cannot be written.
    """
    pred_dir, gt_dir = pathlib.Path(pred), pathlib.Path(gt)
    if isinstance(nsd_tolerance, bool) or not isinstance(nsd_tolerance, (int, float)) \
            or not 0.0 <= float(nsd_tolerance) < math.inf:
        raise UserError(f"--nsd-tolerance must be a distance in mm >= 0, got {nsd_tolerance!r}")
    for folder, role in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {role} folder not found")
    out_dir = pathlib.Path(out) if out else pred_dir
    gts = _nifti_cases(gt_dir)
    if not gts:
        raise UserError(f"{gt_dir}: no ground-truth NIfTI files")
    preds = _nifti_cases(pred_dir)
    preds = {c: p for c, p in preds.items()
             if not (c.endswith("_probabilities") and c not in gts
                     and c[: -len("_probabilities")] in preds)}
    check_folder_roles(gt_dir, pred_dir, out_dir, gts, preds, pred_by_position)
    check_writable_folder(out_dir, "the volumetric scores", "--out")
    check_score_outputs(out_dir)
    cases = sorted(set(gts) & set(preds))
    left_out = {"predictions_without_ground_truth": sorted(set(preds) - set(gts)),
                "ground_truth_without_prediction": sorted(set(gts) - set(preds))}
    if not cases:
        raise UserError(f"{pred_dir}: no prediction has a ground truth of the same case name in "
                        f"{gt_dir} (CASE.nii.gz in both folders); nothing was written")
    if dataset_json is None:
        dataset_json = find_dataset_json(gt_dir)
        if dataset_json is not None:
            log.info("class names and label values from %s", dataset_json)
    expected = None
    if dataset_json:
        names, classes = label_classes(set(), dataset_json)
        expected = {0} | {v for values in classes for v in values}
    loaded = []
    values: set[int] = set()
    unexpected: dict[str, dict[str, list[int]]] = {}
    for case in tqdm(cases, desc="reading", unit="case", disable=not progress):
        gt_path, pred_path = gts[case], preds[case]
        g_img, g = _read_labels(gt_path)
        p_img, p = _read_labels(pred_path)
        if g.shape != p.shape:
            raise UserError(f"{pred_path}: shape {p.shape} differs from {gt_path} {g.shape}")
        if not np.allclose(g_img.affine, p_img.affine, atol=AFFINE_TOLERANCE):
            raise UserError(f"{pred_path}: affine differs from {gt_path}")
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
        for name, metrics in zip(names, case_metrics(p, g, classes, spacing, nsd_tolerance)):
            rows.append({"case": case, "class": name, **metrics})
    write_per_case(out_dir / VOLUMETRIC_CSV, [
        per_case_row("", "labels", r["case"], r["class"], {FOLDER_MODEL: r}) for r in rows],
        [FOLDER_MODEL], what="a score file")
    return write_volumetric_summary(
        out_dir, {FOLDER_MODEL: summarise(rows, names)}, names, cases,
        nsd_tolerance=float(nsd_tolerance), left_out=left_out, unexpected=unexpected,
        what="a score file")


def volumetric_summary(per_model: dict[str, dict], class_names: Sequence[str],
                       cases: Sequence[str], *, split: str | None = None,
                       rule: dict | None = None, nsd_tolerance: float | None = None,
                       left_out: dict[str, list[str]] | None = None,
                       unexpected: dict | None = None) -> dict:
    """The one schema of ``volumetric_summary.json`` (a run's evaluation and ``iac
    evaluate-folder``; ``docs/files.md``)::

        {"schema": 1, "split": ..., "rule": ..., "cases": [...], "nsd_tolerance_mm": ...,
         "models": {model: {"classes": {class: summary}, "foreground_mean": {...}}},
         "cases_left_out": {"predictions_without_ground_truth": [...],
                            "ground_truth_without_prediction": [...]},
         "unexpected_label_values": {case: {"prediction"|"ground_truth": [values]}}}

    ``per_model``: ``{model: {class: summary}}`` (:func:`summarise`); ``foreground_mean`` is
    computed here (:func:`foreground_mean`). ``None`` (JSON ``null``) where the writer does not
    know a value: ``split`` and ``rule`` for ``evaluate-folder`` (label files of any tool, no
    split), ``nsd_tolerance_mm`` for a run (it scores Dice and HD95 only). A run leaves no case
    out and finds no unexpected label value (empty lists and ``{}``): a case of its split
    missing from the dataset and a ground truth with a value outside the dataset's labels stop
    it, and its predictions are painted from the classes."""
    return {
        SCHEMA: SUMMARY_SCHEMA,
        "split": split,
        "rule": rule,
        "cases": sorted(cases),
        TOLERANCE: nsd_tolerance,
        "models": {name: {"classes": {c: per_class[c] for c in class_names},
                          FOREGROUND: foreground_mean(per_class, class_names)}
                   for name, per_class in per_model.items()},
        LEFT_OUT: {key: list((left_out or {}).get(key, [])) for key in LEFT_OUT_KEYS},
        UNEXPECTED: dict(unexpected or {}),
    }


def write_volumetric_summary(out_dir: pathlib.Path, per_model: dict[str, dict],
                             class_names: Sequence[str], cases: Sequence[str], *,
                             what: str = "a file", **known) -> dict:
    """The one writer of ``volumetric_summary.json``: :func:`volumetric_summary` of the
    arguments (``known``: its keyword arguments), written atomically into ``out_dir``;
    returns what it wrote."""
    summary = volumetric_summary(per_model, class_names, cases, **known)
    atomic_write_json(pathlib.Path(out_dir) / VOLUMETRIC_SUMMARY, summary, what=what)
    return summary


#: The files ``evaluate_folder`` writes into its output folder (a run's evaluation folders
#: hold the same two files, in the same schema).
SCORE_FILES = (VOLUMETRIC_CSV, VOLUMETRIC_SUMMARY)
#: ``volumetric_per_case.csv``: these columns, then ``<model>_<metric>`` per model and metric
#: of :data:`METRICS` and :data:`COUNTS` scored (a run: ``dice`` and ``hd95_mm`` of each model;
#: ``iac evaluate-folder``: every metric of its one model :data:`FOLDER_MODEL`).
PER_CASE_KEYS = ("split", "metric", "case", "class")
#: the model name of ``iac evaluate-folder``'s predictions in ``volumetric_per_case.csv``
FOLDER_MODEL = "pred"


def per_case_row(split: str, metric: str, case: str, class_name: str,
                 scores: dict[str, dict[str, float]]) -> dict:
    """One row of ``volumetric_per_case.csv``: ``scores`` maps each model to its metrics."""
    row = dict(zip(PER_CASE_KEYS, (split, metric, case, class_name)))
    for model, metrics in scores.items():
        row.update({f"{model}_{k}": v for k, v in metrics.items() if k in (*METRICS, *COUNTS)})
    return row


def per_case_columns(rows: Sequence[dict], models: Sequence[str]) -> list[str]:
    """:data:`PER_CASE_KEYS`, then per model (in order) each metric some row holds, in the order
    of :data:`METRICS` and :data:`COUNTS`."""
    held = set().union(*(r.keys() for r in rows)) if rows else set()
    return [*PER_CASE_KEYS, *(f"{m}_{k}" for m in models for k in (*METRICS, *COUNTS)
                              if f"{m}_{k}" in held)]


def write_per_case(path: pathlib.Path, rows: Sequence[dict], models: Sequence[str],
                   what: str = "a file") -> None:
    """The one writer of ``volumetric_per_case.csv`` (a run's evaluation and ``iac
    evaluate-folder``): rows of :func:`per_case_row`, columns :func:`per_case_columns`, floats
    with 6 decimals (``nan`` where a metric is undefined)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=per_case_columns(rows, models))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue(), what=what)


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


def _nan_stat(values: np.ndarray, fn) -> float:
    values = values[~np.isnan(values)]
    return float(fn(values)) if values.size else math.nan


def summarise(rows: list[dict], names: Sequence[str]) -> dict:
    """Per class: mean/median of every metric of :data:`METRICS` the rows hold, over the cases
    where it is defined (the class is in the ground truth or the prediction; see the module
    docstring), ``n`` (cases with a Dice) and ``n_empty``; with TP/FP/FN counts also their sums
    and means over the class's cases."""
    out = {}
    for name in names:
        mine = [r for r in rows if r["class"] == name]
        dice = np.array([r["dice"] for r in mine], float)
        entry = {"n": int((~np.isnan(dice)).sum()), "n_empty": int(np.isnan(dice).sum())}
        for metric in METRICS:
            if mine and metric in mine[0]:
                values = np.array([r[metric] for r in mine], float)
                entry[f"{metric}_mean"] = _nan_stat(values, np.mean)
                entry[f"{metric}_median"] = _nan_stat(values, np.median)
        for count in COUNTS:
            if mine and count in mine[0]:
                values = np.array([r[count] for r in mine], np.int64)
                entry[count] = int(values.sum())
                entry[f"{count}_mean"] = float(values.mean())
        out[name] = entry
    return out


def foreground_mean(summary: dict, names: Sequence[str]) -> dict:
    """nnU-Net's ``foreground_mean``: per metric, the mean over the classes of the class means
    (classes without a defined mean left out)."""
    out = {}
    for metric in [*METRICS, *COUNTS]:
        key = f"{metric}_mean"
        values = np.array([summary[n][key] for n in names if key in summary[n]], float)
        if values.size:
            out[key] = _nan_stat(values, np.mean)
    return out


def format_summary(summary: dict) -> str:
    """The per-class table of means (and the foreground mean) of each model of a
    :func:`volumetric_summary` (a line naming the model before its table when there are
    several), then the cases left out and the unexpected label values (if any)."""
    tol = summary.get(TOLERANCE)
    nsd = f"NSD@{tol:g}mm" if tol is not None else "NSD"
    header = (f"{'class':<20}{'n':>4}{'Dice':>8}{'IoU':>8}{'Prec':>8}{'Recall':>8}{nsd:>12}"
              f"{'HD95 mm':>10}")
    lines = []

    def line(name, n, s):
        return (f"{name:<20}{n:>4}{s.get('dice_mean', math.nan):>8.4f}"
                f"{s.get('iou_mean', math.nan):>8.4f}{s.get('precision_mean', math.nan):>8.4f}"
                f"{s.get('recall_mean', math.nan):>8.4f}{s.get('nsd_mean', math.nan):>12.4f}"
                f"{s.get('hd95_mm_mean', math.nan):>10.2f}")

    models = summary["models"]
    for model, scores in models.items():
        if len(models) > 1:
            lines.append(f"{model}:")
        lines.append(header)
        for name, s in scores["classes"].items():
            lines.append(line(name, s["n"], s))
        if scores.get(FOREGROUND):
            lines.append(line("foreground mean", "", scores[FOREGROUND]))
    for key, cases in (summary.get(LEFT_OUT) or {}).items():
        if cases:
            lines.append(f"left out, {key.replace('_', ' ')}: {', '.join(cases)}")
    if summary.get(UNEXPECTED):
        lines.append(f"ignored label values: {_format_unexpected(summary[UNEXPECTED])}")
    return "\n".join(lines)
