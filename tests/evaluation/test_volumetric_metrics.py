"""nnU-Net's per-case metrics (IoU, precision, recall, TP/FP/FN) and MONAI's normalised surface
Dice of ``iac evaluate-folder`` against an independent NumPy/SciPy computation on small
synthetic volumes with anisotropic spacing; class names from ``dataset.json``."""

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from iac_tf.cli import main
from iac_tf.evaluation.volumetric import case_metrics, class_metrics, normalised_surface_dice
from tests.evaluation.test_volumetric import save_labels


def reference_surface(mask):
    """Voxels of ``mask`` with at least one of their 6 face neighbours outside it (the volume's
    outside counts as background), by shifting a zero-padded copy."""
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def reference_metrics(pred, gt, spacing, tol):
    """Every metric by brute force: counts with ``np.sum``, surfaces by shifting, all pairwise
    surface distances in mm (``cdist``)."""
    tp, fp, fn = (int(np.sum(a & b)) for a, b in ((pred, gt), (pred, ~gt), (~pred, gt)))
    nan = math.nan
    out = {"tp": tp, "fp": fp, "fn": fn,
           "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
           "iou": tp / (tp + fp + fn) if tp + fp + fn else nan,
           "precision": tp / (tp + fp) if tp + fp else nan,
           "recall": tp / (tp + fn) if tp + fn else nan}
    if not pred.any() and not gt.any():
        out["nsd"], out["hd95_mm"] = nan, nan
    elif not pred.any() or not gt.any():
        out["nsd"] = 0.0
        out["hd95_mm"] = float(np.linalg.norm(np.array(gt.shape) * spacing))
    else:
        sp = np.argwhere(reference_surface(pred)) * np.asarray(spacing)
        sg = np.argwhere(reference_surface(gt)) * np.asarray(spacing)
        d = cdist(sp, sg)
        d_pg, d_gp = d.min(axis=1), d.min(axis=0)
        out["nsd"] = (np.sum(d_pg <= tol) + np.sum(d_gp <= tol)) / (len(d_pg) + len(d_gp))
        out["hd95_mm"] = float(np.percentile(np.concatenate([d_pg, d_gp]), 95))
    return out


def assert_metrics_equal(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def blobs(rng, shape, count):
    """A few random ellipsoid-like blobs (unions of boxes) with ragged edges."""
    mask = np.zeros(shape, bool)
    for _ in range(count):
        lo = [rng.integers(0, n - 2) for n in shape]
        hi = [min(n, a + rng.integers(2, max(3, n // 2))) for a, n in zip(lo, shape)]
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return mask ^ (rng.uniform(size=shape) > 0.93)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tol", [0.0, 0.7, 2.0])
def test_class_metrics_equal_the_brute_force_reference(seed, tol):
    rng = np.random.default_rng(seed)
    shape = (14, 11, 6)
    gt = blobs(rng, shape, 2)
    pred = gt ^ (rng.uniform(size=shape) > 0.85) if seed % 2 else blobs(rng, shape, 3)
    spacing = (0.6, 1.3, 3.0)  # anisotropic
    got = class_metrics(pred, gt, spacing, tol)
    assert_metrics_equal(got, reference_metrics(pred, gt, spacing, tol))


def test_known_values_and_empty_rule():
    gt = np.zeros((10, 10, 4), bool)
    gt[2:6, 2:6, 1:3] = True  # 32 voxels, every one on the surface (2 slices thick)
    pred = np.roll(gt, 1, axis=0)
    spacing = (0.5, 1.0, 2.0)
    m = class_metrics(pred, gt, spacing, 0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (24, 8, 8)
    assert m["iou"] == pytest.approx(24 / 40) and m["precision"] == m["recall"] == 0.75
    # shifted by one voxel of 0.5 mm along x: every surface voxel is within 0.5 mm
    assert m["nsd"] == 1.0 and normalised_surface_dice(pred, gt, spacing, 0.49) < 1.0
    empty = np.zeros_like(gt)
    missed = class_metrics(empty, gt, spacing, 5.0)
    assert missed["nsd"] == 0.0 and missed["recall"] == 0.0 and math.isnan(missed["precision"])
    extra = class_metrics(gt, empty, spacing, 5.0)
    assert extra["nsd"] == 0.0 and extra["precision"] == 0.0 and math.isnan(extra["recall"])
    both = class_metrics(empty, empty, spacing, 5.0)
    assert all(math.isnan(both[k]) for k in ("dice", "iou", "precision", "recall", "nsd"))
    assert (both["tp"], both["fp"], both["fn"]) == (0, 0, 0)


def test_evaluate_folder_per_case_and_means_against_the_reference(tmp_path, capsys):
    """Two cases, nested regions from dataset.json beside GT (found there), anisotropic
    spacing: every CSV cell and every mean against the reference."""
    rng = np.random.default_rng(11)
    root = tmp_path / "Dataset009_Test"
    gt_dir, pred_dir = root / "labelsTr", tmp_path / "pred"
    gt_dir.mkdir(parents=True), pred_dir.mkdir()
    (root / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "whole": [1, 2], "core": 2}, "regions_class_order": [1, 2],
         "channel_names": {"0": "CT"}, "numTraining": 2, "file_ending": ".nii.gz"}))
    spacing = (0.75, 1.125, 2.5)  # exact in the float32 header
    affine = np.diag(list(spacing) + [1.0])
    classes = [(1, 2), (2,)]
    cases = {}
    for case in ("c1", "c2"):
        gt = blobs(rng, (13, 12, 5), 2).astype(np.uint8) + blobs(rng, (13, 12, 5), 1)
        pred = np.where(rng.uniform(size=gt.shape) > 0.9, rng.integers(0, 3, gt.shape), gt)
        save_labels(gt.astype(np.uint8), affine, gt_dir / f"{case}.nii.gz")
        save_labels(pred.astype(np.uint8), affine, pred_dir / f"{case}.nii.gz", tagged=True)
        cases[case] = (pred, gt)
    assert main(["evaluate-folder", str(gt_dir), str(pred_dir), "--nsd-tolerance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "NSD@1.5mm" in out and "foreground mean" in out
    rows = list(csv.DictReader(open(pred_dir / "volumetric_per_case.csv")))
    assert [(r["case"], r["class"]) for r in rows] == [("c1", "whole"), ("c1", "core"),
                                                       ("c2", "whole"), ("c2", "core")]
    assert list(rows[0]) == ["split", "metric", "case", "class", "pred_dice", "pred_iou",
                             "pred_precision", "pred_recall", "pred_nsd", "pred_hd95_mm",
                             "pred_tp", "pred_fp", "pred_fn"]  # a run's schema, model "pred"
    summary = json.loads((pred_dir / "volumetric_summary.json").read_text())
    assert summary["nsd_tolerance_mm"] == 1.5
    scores = summary["models"]["pred"]
    wants = {}
    for row in rows:
        pred, gt = cases[row["case"]]
        values = classes[["whole", "core"].index(row["class"])]
        want = reference_metrics(np.isin(pred, values), np.isin(gt, values), spacing, 1.5)
        wants.setdefault(row["class"], []).append(want)
        for key, value in want.items():
            assert float(row[f"pred_{key}"]) == pytest.approx(value, abs=2e-6), (row, key)
    class_means = {}
    for name, per_case in wants.items():
        for key in ("dice", "iou", "precision", "recall", "nsd", "hd95_mm"):
            mean = np.nanmean([w[key] for w in per_case])
            assert scores["classes"][name][f"{key}_mean"] == pytest.approx(mean, rel=1e-9)
            class_means.setdefault(key, []).append(mean)
        for key in ("tp", "fp", "fn"):
            assert scores["classes"][name][key] == sum(w[key] for w in per_case)
    for key, means in class_means.items():
        assert scores["foreground_mean"][f"{key}_mean"] == pytest.approx(np.mean(means))
    assert sorted(p.name for p in gt_dir.iterdir()) == ["c1.nii.gz", "c2.nii.gz"]


def test_case_metrics_per_class_of_a_label_map():
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 3, (9, 8, 4))
    pred = rng.integers(0, 3, (9, 8, 4))
    got = case_metrics(pred, gt, [(1,), (2,), (1, 2)], (1.0, 0.5, 2.0), 1.0)
    for metrics, values in zip(got, [(1,), (2,), (1, 2)]):
        assert_metrics_equal(metrics, reference_metrics(np.isin(pred, values),
                                                        np.isin(gt, values),
                                                        (1.0, 0.5, 2.0), 1.0))


def test_bad_tolerance_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate-folder", str(tmp_path), str(tmp_path), "--nsd-tolerance", "-1"])
    assert "--nsd-tolerance" in capsys.readouterr().err
    from iac_tf.errors import UserError
    from iac_tf.evaluation.volumetric import evaluate_folder

    with pytest.raises(UserError, match="--nsd-tolerance must be a distance"):
        evaluate_folder(gt=tmp_path, pred=tmp_path, nsd_tolerance=float("nan"))
    assert nib is not None
