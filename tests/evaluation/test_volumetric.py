"""Volumetric Dice and HD95 (mm) against hand-made volumes with known distances, an independent
brute-force HD95, the empty-mask rule, and ``iac evaluate-folder`` (folder order and roles;
the new metrics are in test_volumetric_metrics.py)."""

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest

from iac_tf.cli import main
from iac_tf.data.nifti import PREDICTION_TAG
from iac_tf.evaluation.volumetric import hd95, score_case, surface, volume_diagonal


def save_labels(data, affine, path, tagged=False):
    """A label NIfTI; ``tagged``: with the header tag of ``iac predict``'s files."""
    img = nib.Nifti1Image(data, affine)
    if tagged:
        img.header["descrip"] = PREDICTION_TAG
    nib.save(img, str(path))


def brute_hd95(a, b, spacing):
    """Pairwise distances between the surface voxels (no distance transform)."""
    pa = np.argwhere(surface(a)) * np.asarray(spacing)
    pb = np.argwhere(surface(b)) * np.asarray(spacing)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)


def test_single_voxels_anisotropic_spacing():
    a, b = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    a[1, 2, 3], b[4, 2, 3] = True, True
    assert hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(a, b, (0.5, 1.0, 1.0)) == pytest.approx(1.5)


def test_shifted_boxes_known_distance_and_dice():
    a = np.zeros((20, 20, 10), bool)
    a[4:12, 5:13, 2:8] = True
    b = np.roll(a, 3, axis=0)  # every surface point moves by 3 voxels along x
    spacing = (0.8, 1.0, 2.5)
    assert hd95(a, b, spacing) == pytest.approx(3 * 0.8)
    (dice, dist), = score_case(b.astype(np.uint8), a.astype(np.uint8), ((1,),), spacing)
    assert dice == pytest.approx(2 * 5 / (8 + 8))  # overlap 5 of 8 slices along x
    assert dist == pytest.approx(2.4)


def test_against_brute_force_on_irregular_shapes():
    rng = np.random.default_rng(3)
    for _ in range(3):
        a = rng.uniform(size=(12, 11, 7)) > 0.6
        b = rng.uniform(size=(12, 11, 7)) > 0.7
        spacing = tuple(rng.uniform(0.5, 3.0, 3))
        assert hd95(a, b, spacing) == pytest.approx(brute_hd95(a, b, spacing))


def test_empty_mask_rule():
    empty, full = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool)
    full[1:3, 1:3, 1:3] = True
    assert math.isnan(hd95(empty, empty, (1, 1, 1)))
    assert hd95(full, empty, (1, 2, 3)) == hd95(empty, full, (1, 2, 3)) == pytest.approx(
        volume_diagonal((4, 5, 6), (1, 2, 3))) == pytest.approx(math.sqrt(16 + 100 + 324))
    (dice, dist), = score_case(empty.astype(int), empty.astype(int), ((1,),), (1, 1, 1))
    assert math.isnan(dice) and math.isnan(dist)
    (dice, _), = score_case(full.astype(int), empty.astype(int), ((1,),), (1, 1, 1))
    assert dice == 0.0


def test_evaluate_folder_cli(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    gt = np.zeros((16, 16, 6), np.uint8)
    gt[2:10, 2:10, 1:5] = 1
    gt[4:6, 4:6, 2:4] = 2
    pred = np.roll(gt, 2, axis=1)
    save_labels(gt, affine, gt_dir / "c1.nii.gz")
    save_labels(pred, affine, pred_dir / "c1.nii.gz", tagged=True)
    save_labels(np.zeros_like(gt), affine, gt_dir / "c2.nii.gz")
    save_labels(np.zeros_like(gt), affine, pred_dir / "c2.nii.gz", tagged=True)
    assert main(["evaluate-folder", str(gt_dir), str(pred_dir)]) == 0  # nnU-Net's order
    assert sorted(p.name for p in gt_dir.iterdir()) == ["c1.nii.gz", "c2.nii.gz"]
    rows = list(csv.DictReader(open(pred_dir / "volumetric_per_case.csv")))
    assert [(r["case"], r["class"]) for r in rows] == [("c1", "1"), ("c1", "2"), ("c2", "1"),
                                                       ("c2", "2")]
    assert float(rows[1]["pred_dice"]) == pytest.approx(0.0) and float(rows[1]["pred_hd95_mm"]) == 1.0
    assert float(rows[0]["pred_hd95_mm"]) == pytest.approx(1.0)  # shifted 2 voxels of 0.5 mm
    summary = json.loads((pred_dir / "volumetric_summary.json").read_text())
    classes = summary["models"]["pred"]["classes"]
    assert classes["1"]["n"] == 1 and classes["1"]["n_empty"] == 1
    save_labels(pred, np.diag([1.0, 0.5, 2.0, 1.0]), pred_dir / "c1.nii.gz", tagged=True)
    assert main(["evaluate-folder", str(gt_dir), str(pred_dir)]) == 2
    assert f"{pred_dir / 'c1.nii.gz'}: affine differs" in capsys.readouterr().err


def write_labels(folder, cases, affine=np.diag([0.5, 0.5, 2.0, 1.0]), extra=None, tagged=False):
    """``CASE.nii.gz`` label volumes (a box of 1s; ``extra``: ``{case: value}`` also painted;
    ``tagged``: written as ``iac predict`` writes them)."""
    folder.mkdir(exist_ok=True)
    for case in cases:
        data = np.zeros((12, 12, 4), np.uint8)
        data[2:8, 2:8, 1:3] = 1
        if extra and case in extra:
            data[9:11, 9:11, 1] = extra[case]
        save_labels(data, affine, folder / f"{case}.nii.gz", tagged)
    return folder


def test_cases_left_out_and_unexpected_labels_are_warned_and_listed(tmp_path, capsys):
    pred_dir = write_labels(tmp_path / "pred", ["c1", "c2", "c3"], extra={"c1": 7})
    nib.save(nib.Nifti1Image(np.zeros((12, 12, 4, 1), np.float32), np.eye(4)),
             str(pred_dir / "c1_probabilities.nii.gz"))  # iac predict's, not a case
    gt_dir = write_labels(tmp_path / "gt", ["c1", "c2", "c4"])
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "organ": 1}}))
    assert main(["evaluate-folder", "--gt", str(gt_dir), "--pred", str(pred_dir),
                 "--dataset-json", str(tmp_path / "dataset.json")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning:" in line]
    assert len(warnings) == 3, warnings
    assert any("predictions without ground truth: c3" in w for w in warnings)
    assert any("ground truth without prediction: c4" in w for w in warnings)
    assert any("c1 (prediction: 7)" in w for w in warnings)
    summary = json.loads((pred_dir / "volumetric_summary.json").read_text())
    assert summary["cases_left_out"] == {"predictions_without_ground_truth": ["c3"],
                                         "ground_truth_without_prediction": ["c4"]}
    assert summary["unexpected_label_values"] == {"c1": {"prediction": [7]}}
    assert summary["models"]["pred"]["classes"]["organ"]["n"] == 2
    assert "without ground truth: c3" in captured.out and "without prediction: c4" in captured.out
    assert "ignored label values: c1 (prediction: 7)" in captured.out


def test_no_matching_case_is_an_error(tmp_path, capsys):
    pred_dir = write_labels(tmp_path / "pred", ["a"])
    gt_dir = write_labels(tmp_path / "gt", ["b"])
    assert main(["evaluate-folder", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 2
    assert "no prediction has a ground truth" in capsys.readouterr().err
    assert sorted(p.name for p in pred_dir.iterdir()) == ["a.nii.gz"]


def test_truncated_prediction_is_one_line_and_writes_nothing(tmp_path, capsys):
    pred_dir = write_labels(tmp_path / "pred", ["c1", "c2"])
    gt_dir = write_labels(tmp_path / "gt", ["c1", "c2"])
    rng = np.random.default_rng(0)  # noise: the gzip stream is long enough to cut
    nib.save(nib.Nifti1Image(rng.integers(0, 2, (12, 12, 4)).astype(np.float32),
                             np.diag([0.5, 0.5, 2.0, 1.0])), str(pred_dir / "c2.nii.gz"))
    data = (pred_dir / "c2.nii.gz").read_bytes()
    (pred_dir / "c2.nii.gz").write_bytes(data[: len(data) // 2])
    assert main(["evaluate-folder", "--gt", str(gt_dir), "--pred", str(pred_dir)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("iac: error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"iac: error: {pred_dir / 'c2.nii.gz'}: ") and "truncated" in err
    assert sorted(p.name for p in pred_dir.iterdir()) == ["c1.nii.gz", "c2.nii.gz"]


def test_unwritable_out_is_found_before_any_work(tmp_path, capsys, monkeypatch, unwritable):
    import iac_tf.evaluation.volumetric as volumetric

    pred_dir = write_labels(tmp_path / "pred", ["c1"])
    gt_dir = write_labels(tmp_path / "gt", ["c1"])

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before the output folder was checked")

    monkeypatch.setattr(volumetric, "score_case", no_scoring)
    assert main(["evaluate-folder", "--gt", str(gt_dir), "--pred", str(pred_dir), "--out",
                 str(unwritable)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"iac: error: {unwritable}: not writable") and err.count("\n") == 1
    assert "--out" in err and not any(unwritable.iterdir()) and "Traceback" not in err


def listing(*folders):
    return {f: sorted(p.name for p in f.iterdir()) for f in folders}


def test_swapped_positional_folders_are_refused(tmp_path, capsys):
    """The order before nnU-Net's (PRED GT) now means GT=predictions: refused by content."""
    pred_dir = write_labels(tmp_path / "pred", ["c1", "c2"], tagged=True)
    gt_dir = write_labels(tmp_path / "gt", ["c1", "c2"])
    before = listing(pred_dir, gt_dir)
    assert main(["evaluate-folder", str(pred_dir), str(gt_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"iac: error: {pred_dir}: the ground-truth folder holds predictions "
                          "written by iac predict (c1.nii.gz, c2.nii.gz)")
    assert "swapped" in err and "GT PRED" in err and "--gt GT --pred PRED" in err
    assert err.count("\n") == 1 and listing(pred_dir, gt_dir) == before
    # by keyword too: a ground truth written by iac predict is refused
    assert main(["evaluate-folder", "--gt", str(pred_dir), "--pred", str(gt_dir)]) == 2
    assert "holds predictions written by iac predict" in capsys.readouterr().err
    assert listing(pred_dir, gt_dir) == before
    assert main(["evaluate-folder", str(gt_dir), str(pred_dir)]) == 0  # the right order
    assert listing(gt_dir)[gt_dir] == before[gt_dir]
    assert "volumetric_summary.json" in listing(pred_dir)[pred_dir]


def test_positional_prediction_folder_without_predictions_is_refused(tmp_path, capsys):
    """Two folders of plain labels (e.g. another tool's predictions): the order cannot be told
    from the content, so positional use is refused and --gt/--pred accepted."""
    other = write_labels(tmp_path / "other_tool", ["c1"])
    gt_dir = write_labels(tmp_path / "gt", ["c1"])
    before = listing(other, gt_dir)
    assert main(["evaluate-folder", str(gt_dir), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"iac: error: {other}: given as PRED but holds no prediction written "
                          "by iac predict")
    assert "swap the folders" in err and "--gt GT --pred PRED" in err
    assert listing(other, gt_dir) == before
    assert main(["evaluate-folder", "--gt", str(gt_dir), "--pred", str(other)]) == 0
    assert main(["evaluate-folder", str(gt_dir), "--pred", str(other)]) == 0
    assert listing(gt_dir) == {gt_dir: before[gt_dir]}


@pytest.mark.parametrize("args, message", [
    (lambda gt, pred: [str(gt)], "give the ground-truth and the prediction folder once each"),
    (lambda gt, pred: [str(gt), str(pred), "--gt", str(gt)], "once each"),
    (lambda gt, pred: ["--gt", str(gt)], "once each"),
    (lambda gt, pred: [str(gt), str(gt)], "given as both the ground truth and the predictions"),
    (lambda gt, pred: [str(gt), str(pred), "--out", str(gt)], "never written there"),
    (lambda gt, pred: [str(gt), str(pred), "--out", str(gt / "scores")], "never written there"),
])
def test_folder_arguments_and_results_never_in_the_ground_truth(tmp_path, capsys, args, message):
    pred_dir = write_labels(tmp_path / "pred", ["c1"], tagged=True)
    gt_dir = write_labels(tmp_path / "gt", ["c1"])
    before = listing(pred_dir, gt_dir)
    assert main(["evaluate-folder", *args(gt_dir, pred_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iac: error: ") and message in err and err.count("\n") == 1
    assert listing(pred_dir, gt_dir) == before


def test_python_api_takes_the_folders_by_keyword_only(tmp_path):
    from iac_tf.evaluation.volumetric import evaluate_folder

    pred_dir = write_labels(tmp_path / "pred", ["c1"], tagged=True)
    gt_dir = write_labels(tmp_path / "gt", ["c1"])
    with pytest.raises(TypeError):
        evaluate_folder(pred_dir, gt_dir)  # the old positional order fails loudly
    summary = evaluate_folder(gt=gt_dir, pred=pred_dir, progress=False)
    assert summary["models"]["pred"]["classes"]["1"]["dice_mean"] == 1.0


def test_channels_scored_alone_or_as_a_label_map():
    """``score_channels`` (``evaluation.metric: paper_channels``) scores any binary channels; of
    the label map's channels it is ``score_case``; a voxel in two predicted channels counts for
    both (against the reference Dice of each channel)."""
    from iac_tf.evaluation.volumetric import score_channels
    from iac_tf.labels import labels_to_channels

    rng = np.random.default_rng(7)
    classes = ((1, 2, 3), (1, 3), (3,))
    gt = rng.integers(0, 4, (9, 8, 5))
    pred = rng.integers(0, 4, (9, 8, 5))
    assert score_channels(labels_to_channels(pred, classes), gt, classes, (1, 1, 1)) == \
        score_case(pred, gt, classes, (1, 1, 1))
    both = np.stack([gt == 1, (gt == 1) | (gt == 2)], -1)  # channel 1 also claims class 1
    scored = score_channels(both, gt, ((1,), (2,)), (1, 1, 1))
    assert scored[0][0] == 1.0
    assert scored[1][0] == pytest.approx(2 * (gt == 2).sum() / ((gt == 2).sum() + both[..., 1].sum()))


# ----------------------------------------------------------------- what evaluate-folder may write
def _scored_run(folder):
    """A run folder of this tool whose evaluation holds its own volumetric scores."""
    from iac_tf.files import atomic_write_text
    from iac_tf.run_layout import RunLayout

    layout = RunLayout(folder)
    with layout.lock():
        layout.claim()
        for name in ("volumetric_per_case.csv", "volumetric_summary.json"):
            atomic_write_text(layout.evaluation / name, f"the run's {name}\n")
    return layout


def _contents(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_evaluate_folder_never_writes_into_a_run(tmp_path):
    """The run's own volumetric scores stay what the run wrote, whichever folder of the run
    --out names, and nothing is read before the refusal."""
    from iac_tf.evaluation.volumetric import evaluate_folder
    from iac_tf.files import RefusedPath

    layout = _scored_run(tmp_path / "runs" / "r")
    pred_dir = write_labels(tmp_path / "pred", ["c1"])
    gt_dir = write_labels(tmp_path / "gt", ["c1"])
    before = _contents(layout.root)
    for out in (layout.evaluation, layout.root, layout.root / "new_folder"):
        with pytest.raises(RefusedPath, match=f"{layout.root}.*never written into a run"):
            evaluate_folder(gt=gt_dir, pred=pred_dir, out=out, progress=False)
        assert _contents(layout.root) == before
    assert not (layout.root / "new_folder").exists()


def test_evaluate_folder_keeps_a_users_own_score_file(tmp_path):
    """A ``volumetric_summary.json`` the user wrote is refused (nothing read or written); the
    tool's own scores of an earlier evaluate-folder are replaced, unless edited since."""
    from iac_tf.evaluation.volumetric import evaluate_folder
    from iac_tf.files import RefusedPath

    pred_dir = write_labels(tmp_path / "pred", ["c1"])
    gt_dir = write_labels(tmp_path / "gt", ["c1"])
    out = tmp_path / "scores"
    out.mkdir()
    (out / "volumetric_summary.json").write_text('{"mine": 1}\n')
    with pytest.raises(RefusedPath, match="volumetric_summary.json: exists and is not a score"):
        evaluate_folder(gt=gt_dir, pred=pred_dir, out=out, progress=False)
    assert _contents(out) == {"volumetric_summary.json": b'{"mine": 1}\n'}
    (out / "volumetric_summary.json").unlink()
    evaluate_folder(gt=gt_dir, pred=pred_dir, out=out, progress=False)
    evaluate_folder(gt=gt_dir, pred=pred_dir, out=out, progress=False)  # its own
    edited = (out / "volumetric_per_case.csv").read_text() + "c9,1,0.5,1.0\n"
    (out / "volumetric_per_case.csv").write_text(edited)
    with pytest.raises(RefusedPath, match="volumetric_per_case.csv: was written by this tool"):
        evaluate_folder(gt=gt_dir, pred=pred_dir, out=out, progress=False)
    assert (out / "volumetric_per_case.csv").read_text() == edited
