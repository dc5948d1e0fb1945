"""The evaluation of ``iac run`` / ``iac evaluate`` scores every model of models.json on the whole
volumes of test_dt (evaluation/test_dt/), and the table and the console name the split that
selected the epochs (val_dt) and the split scored; without test cases one line says so.

Covers: iac_tf/pipeline/evaluation.py
"""

import csv
import dataclasses
import json
import logging
import pathlib
import shutil

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.data import DataConfig, prepare_dataset
from iac_tf.evaluation.volumetric import evaluate_folder
from iac_tf.inference.run_scores import score_volumes
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.pipeline.evaluation import run_evaluation
from iac_tf.run_layout import RunLayout, register_model
from iac_tf.run_records import write_resolved
from iac_tf.unets import build_unet
from tests.data.fixtures import write_nnunet

PATCH = 48  # > the fixture's 40 x 36 in-plane


def _run(tmp_path, test_cases=()):
    """A run folder whose U-Net (stage1) and ``iac`` (models.json) are two tiny U-Nets."""
    ds = write_nnunet(tmp_path / "data", test_cases=test_cases)
    data = DataConfig(format="nnunet", root=str(ds), cache_dir=str(tmp_path / "cache"),
                      patch_size=PATCH)
    cfg = dataclasses.replace(ExperimentConfig(data=data), name="run", output_dir=str(tmp_path))
    with RunLayout.of(cfg).lock():  # only the holder of a run's lock writes into it
        write_resolved(cfg)
    for seed, folder in ((0, "stage1"), (1, "stage3")):
        keras.utils.set_random_seed(seed)
        model = build_unet("base", input_shape=(PATCH, PATCH, 1), classes=2, base_filters=4)
        (cfg.run_dir / folder).mkdir(parents=True)
        model.save(cfg.run_dir / folder / "best_model.keras")
    register_model(cfg.run_dir, "iac", cfg.run_dir / "stage3" / "best_model.keras")
    return cfg, prepare_dataset(cfg.data, progress=False)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_model_is_scored_on_test_dt_volumes_and_both_splits_are_named(tmp_path, caplog):
    cfg, prepared = _run(tmp_path, test_cases=("t0", "t1"))
    caplog.set_level(logging.INFO)
    report = run_evaluation(cfg, prepared)
    ev = cfg.run_dir / "evaluation"
    test_dir = ev / "test_dt"
    volumetric = _rows(test_dir / "volumetric_per_case.csv")
    assert list(volumetric[0]) == ["split", "metric", "case", "class", "unet_dice", "unet_hd95_mm", "iac_dice",
                                   "iac_hd95_mm"]
    assert [(r["case"], r["class"]) for r in volumetric] == [
        (c, k) for c in ("t0", "t1") for k in ("organ", "lesion")]
    models = json.loads((test_dir / "volumetric_summary.json").read_text())["models"]
    assert set(models) == {"unet", "iac"} and set(models["iac"]["classes"]) == {"organ", "lesion"}
    # one Dice column per model, the same values as the volumetric table
    dice = _rows(test_dir / "dice_per_case.csv")
    assert list(dice[0]) == ["split", "metric", "case", "class", "unet", "iac"]
    assert {(d["split"], d["metric"]) for d in dice} == {("test_dt", "labels")}
    for d, v in zip(dice, volumetric):
        for model in ("unet", "iac"):
            assert np.isclose(float(d[model]), float(v[f"{model}_dice"]), atol=1e-4, equal_nan=True)
    stats = json.loads((test_dir / "stats.json").read_text())
    assert stats["split"] == "test_dt" and stats["selected_on"] == "val_dt"
    assert stats["cases"] == ["t0", "t1"] and set(stats["methods"]) == {"iac"}
    assert report["test"]["volumetric"].keys() == {"unet", "iac"}
    assert (test_dir / "dice_paired.png").stat().st_size > 0  # the plots of val_dt, for test_dt
    assert (test_dir / "dice_methods.png").stat().st_size > 0
    # the val_dt outputs stay where they were, on val_dt cases only
    val_cases = set(prepared.splits["cases"]["val_dt"])
    assert {r["case"] for r in _rows(ev / "volumetric_per_case.csv")} == val_cases
    assert {r["case"] for r in _rows(ev / "dice_per_case.csv")} == val_cases
    # the table and the console name the split that selected the epochs and the split scored
    table = (ev / "dice_table.md").read_text()
    assert table.startswith("Best epochs selected on: `val_dt`. Scored on: `val_dt`")
    assert "## test_dt" in table and "Scored on: `test_dt` (2 cases; per-case Dice of whole" in table
    assert "HD95 (mm)" in table
    console = caplog.text
    assert "Best epochs selected on: `val_dt`. Scored on: `val_dt`" in console
    assert "Scored on: `test_dt` (2 cases" in console
    assert "No test_dt" not in console


def test_a_run_without_test_cases_says_so_once_and_writes_no_test_scores(tmp_path, caplog):
    cfg, prepared = _run(tmp_path)
    caplog.set_level(logging.INFO)
    report = run_evaluation(cfg, prepared)
    ev = cfg.run_dir / "evaluation"
    assert report["test"] is None and not (ev / "test_dt").exists()
    assert caplog.text.count("No test_dt") == 1
    table = (ev / "dice_table.md").read_text()
    assert table.startswith("Best epochs selected on: `val_dt`. Scored on: `val_dt`")
    assert "In-sample" in table and table.rstrip().endswith(
        "another split the run trained or selected on.")
    assert (ev / "volumetric_per_case.csv").is_file() and (ev / "stats.json").is_file()


def test_a_run_and_evaluate_folder_write_one_summary_schema(tmp_path):
    """``volumetric_summary.json`` of a run's scores and of ``iac evaluate-folder``: the same
    top-level keys, each model ``classes`` and ``foreground_mean``, each class the same
    statistics (a run scores Dice and HD95 only; evaluate-folder every metric)."""
    cfg, _ = _run(tmp_path, test_cases=("t0", "t1"))
    models = {"unet": keras.models.load_model(cfg.run_dir / "stage1" / "best_model.keras")}
    with RunLayout.of(cfg).lock():
        score_volumes(cfg, models, "test_dt", case_ids=["t0", "t1"])
    run = json.loads((RunLayout.of(cfg).test_evaluation / "volumetric_summary.json").read_text())
    ds = pathlib.Path(cfg.data.root)
    pred = tmp_path / "pred"
    shutil.copytree(ds / "labelsTs", pred)
    evaluate_folder(gt=ds / "labelsTs", pred=pred, dataset_json=ds / "dataset.json",
                    out=tmp_path / "scores", progress=False)
    folder = json.loads((tmp_path / "scores" / "volumetric_summary.json").read_text())
    assert list(run) == list(folder)
    assert run["schema"] == folder["schema"] == 1 and run["cases"] == folder["cases"] == ["t0", "t1"]
    assert run["split"] == "test_dt" and folder["split"] is None
    assert run["rule"]["metric"] == "labels" and folder["rule"] is None
    assert run["cases_left_out"] == folder["cases_left_out"] == {
        "predictions_without_ground_truth": [], "ground_truth_without_prediction": []}
    assert run["unexpected_label_values"] == folder["unexpected_label_values"] == {}
    assert run["nsd_tolerance_mm"] is None and folder["nsd_tolerance_mm"] == 1.0
    assert list(run["models"]) == ["unet"] and list(folder["models"]) == ["pred"]
    ours, theirs = run["models"]["unet"], folder["models"]["pred"]
    assert list(ours) == list(theirs) == ["classes", "foreground_mean"]
    assert list(ours["classes"]) == list(theirs["classes"]) == ["organ", "lesion"]
    stats = ["n", "n_empty", "dice_mean", "dice_median", "hd95_mm_mean", "hd95_mm_median"]
    for name in ("organ", "lesion"):
        assert list(ours["classes"][name]) == stats
        assert set(stats) < set(theirs["classes"][name])
        assert theirs["classes"][name]["dice_mean"] == 1.0  # the labels against themselves
    assert list(ours["foreground_mean"]) == ["dice_mean", "hd95_mm_mean"]
    assert set(ours["foreground_mean"]) < set(theirs["foreground_mean"])
    assert ours["foreground_mean"]["dice_mean"] == pytest.approx(
        np.nanmean([ours["classes"][c]["dice_mean"] for c in ("organ", "lesion")]))
