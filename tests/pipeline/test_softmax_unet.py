"""A softmax U-Net (background + 2 classes, as nnU-Net and MONAI train) given to ``iac run``
(``unet.pretrained``): Stage II searches with the softmax loss, Stage III, ``unet_continued`` and
a comparison train with it, and every score, the tables, ``iac predict``, the export and its
client label by the argmax over background + classes."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.cli import main
from iac_tf.data import prepare_dataset
from iac_tf.evaluation.metrics import case_dice
from iac_tf.config.experiment import load_experiment
from iac_tf.inference.client import load_export, predict_nifti
from iac_tf.models import load_unet
from iac_tf.pipeline.common import label_rule
from iac_tf.run_layout import RunLayout
from tests.data import fixtures
from tests.tiny import tiny_unet, write_config

CASES = tuple(f"c{i}" for i in range(8))


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("softmax_run")
    dataset = fixtures.write_nnunet(folder / "raw", cases=CASES, test_cases=("t0", "t1"))
    keras.utils.set_random_seed(0)
    unet = folder / "unet.keras"
    tiny_unet(32, f=4, classes=2, activation="softmax", separate=True).save(unet)
    config = write_config(folder, dataset, folder / "cache", unet__pretrained=str(unet),
                          stage3__monitor="val_case_dice", compare=["attention"],
                          evaluation__tta=False, stage2__cell_steps=2,
                          stage3__export_savedmodel=False)
    assert main(["run", str(config)]) == 0
    cfg = load_experiment(config)
    return cfg, prepare_dataset(cfg.data, progress=False), folder


def test_every_stage_trains_with_the_softmax_loss(softmax_run):
    cfg, _, _ = softmax_run
    run = cfg.run_dir
    search = _rows(run / "stage2" / "history.csv")
    assert len(search) == 1
    for split in ("train_search", "val_search"):
        # Dice of the classes + cross-entropy: the loss exceeds 1 - Dice by the cross-entropy
        loss, dice = float(search[0][f"loss_{split}"]), float(search[0][f"soft_dice_{split}"])
        assert 0.0 < dice < 1.0 and loss > 1.0 - dice + 1e-3
    for folder in ("stage3", "compare/unet_continued", "compare/attention"):
        summary = json.loads((run / folder / "summary.json").read_text())
        assert summary["selection_rule"]["label_mode"] == "softmax", folder
        assert summary["selection_metric"] == "val_case_dice"
        last = _rows(run / folder / "history.csv")[-1]
        assert float(last["loss"]) > 1.0 - float(last["soft_dice"]) + 1e-3, folder
    assert set(json.loads((run / "models.json").read_text())) >= {
        "unet", "iac", "unet_continued", "attention"}
    assert json.loads((run / "unet_score.json").read_text())["cases"] >= 1


def test_the_tables_score_the_argmax_labels(softmax_run):
    """val_dt's Dice table (and the given U-Net's score) against an independent computation:
    labels = argmax over background + classes, per case over its slices."""
    cfg, prepared, _ = softmax_run
    ev = cfg.run_dir / "evaluation"
    for stats in (ev / "stats.json", ev / "test_dt" / "stats.json"):
        assert json.loads(stats.read_text())["rule"]["label_mode"] == "softmax"
    images, masks, case_ids = prepared.arrays("val_dt")
    models = {"unet": load_unet(cfg.unet.pretrained),
              "iac": load_unet(cfg.run_dir / "stage3" / "best_model.keras")}
    rows = _rows(ev / "dice_per_case.csv")
    for name, model in models.items():
        probs = model.predict(images, verbose=0)
        labels = np.argmax(probs, axis=-1)
        for case in dict.fromkeys(case_ids):
            sel = np.asarray(case_ids) == case
            for k, cls in enumerate(prepared.class_names):
                g, p = masks[sel][..., k] > 0.5, labels[sel] == k + 1
                want = 2 * (g & p).sum() / (g.sum() + p.sum()) if g.sum() + p.sum() else np.nan
                got = [float(r[name]) for r in rows if r["case"] == case and r["class"] == cls]
                assert np.isclose(got[0], want, atol=5e-5, equal_nan=True), (name, case, cls)
        if name == "unet":
            score = json.loads((cfg.run_dir / "unet_score.json").read_text())["mean_dice"]
            rule = label_rule(cfg, prepared)
            assert rule.mode == "softmax"
            per_case = case_dice(masks, probs, case_ids, rule)
            assert score == pytest.approx(np.mean([np.nanmean(v) for v in per_case.values()]))


def test_predict_export_client_and_test_table_give_the_same_labels(softmax_run, tmp_path):
    cfg, _, folder = softmax_run
    run = cfg.run_dir
    image = folder / "raw" / "Dataset999_Tiny" / "imagesTs" / "t0_0000.nii.gz"
    out = tmp_path / "t0.nii.gz"
    assert main(["predict", str(run), str(image), str(out), "--no-tta",
                 "--save-probabilities"]) == 0
    labels = np.asarray(nib.load(str(out)).dataobj)
    probs = np.asarray(nib.load(str(tmp_path / "t0_probabilities.nii.gz")).dataobj)
    assert probs.shape[-1] == 3  # background + 2 classes
    np.testing.assert_array_equal(labels, np.array([0, 1, 2])[np.argmax(probs, axis=-1)])
    # the test_dt table scored these labels (predict without mirroring, as evaluation.tta)
    gt = np.asarray(nib.load(str(image.parent.parent / "labelsTs" / "t0.nii.gz")).dataobj)
    rows = [r for r in _rows(run / "evaluation" / "test_dt" / "volumetric_per_case.csv")
            if r["case"] == "t0"]
    for k, row in enumerate(rows):
        g, p = gt == k + 1, labels == k + 1
        want = 2 * (g & p).sum() / (g.sum() + p.sum()) if g.sum() + p.sum() else np.nan
        assert np.isclose(float(row["iac_dice"]), want, atol=1e-5, equal_nan=True)
    # the export records the softmax rule and its client labels as iac predict does
    served = tmp_path / "serving"
    assert main(["export", str(run), str(served)]) == 0
    info = json.loads((served / "preprocessing.json").read_text())
    assert info["label_rule"]["label_mode"] == "softmax"
    export = load_export(served)
    assert export.label_mode == "softmax" and export.outputs == 3
    from_export = tmp_path / "served.nii.gz"
    assert main(["predict", str(served), str(image), str(from_export), "--no-tta"]) == 0
    np.testing.assert_array_equal(predict_nifti(image, export, tta=False),
                                  np.asarray(nib.load(str(from_export)).dataobj))
    assert (np.asarray(nib.load(str(from_export)).dataobj) == labels).mean() > 0.999


def test_stage1_can_train_a_softmax_zoo_unet(tmp_path):
    """``unet.output: softmax``: Stage I's zoo U-Net ends in a softmax over background + classes,
    trains with Dice of the classes + cross-entropy and selects on the argmax rule."""
    dataset = fixtures.write_nnunet(tmp_path / "raw", cases=CASES[:6])
    config = write_config(tmp_path, dataset, tmp_path / "cache", unet__output="softmax")
    assert main(["stage1", str(config)]) == 0
    cfg = load_experiment(config)
    model = load_unet(RunLayout.of(cfg).stage(1) / "best_model.keras")
    assert model.output_shape[-1] == 3 and model.layers[-1].name == "softmax"
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(axis=-1), 1.0, rtol=1e-5)
    summary = json.loads((RunLayout.of(cfg).stage(1) / "summary.json").read_text())
    assert summary["selection_rule"]["label_mode"] == "softmax"
    last = _rows(RunLayout.of(cfg).stage(1) / "history.csv")[-1]
    assert float(last["loss"]) > 1.0 - float(last["soft_dice"]) + 1e-3  # + cross-entropy
    rule = label_rule(cfg, prepare_dataset(cfg.data, progress=False))
    assert rule.mode == "softmax"


def test_stage1_softmax_on_nested_regions_is_refused_before_anything_is_written(tmp_path,
                                                                               capsys):
    dataset = fixtures.write_nnunet(tmp_path / "raw", cases=CASES[:6])
    meta = json.loads((dataset / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    meta["regions_class_order"] = [1, 2]
    (dataset / "dataset.json").write_text(json.dumps(meta))
    config = write_config(tmp_path, dataset, tmp_path / "cache", unet__output="softmax")
    assert main(["stage1", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unet.output: softmax" in err and str(dataset) in err and "nested regions" in err
    assert not load_experiment(config).run_dir.exists()
