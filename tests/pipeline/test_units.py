"""One unit of training (``iac_tf.pipeline.units``), without training anything: a unit whose fit
writes what a training writes is trained once, registered, then skipped; an export it needs
keeps it unfinished; every kind of model is a unit with its own name, folder and settings."""

from __future__ import annotations

import csv
import json
import logging
import pathlib

import pytest

from iac_tf.config.stages import Stage1Config, TrainingSettings
from iac_tf.config.experiment import load_experiment
from iac_tf.pipeline.units import (TrainingUnit, comparison_unit, finished, stage1_unit, train_unit,
                                   unet_continued_unit)
from iac_tf.run_layout import RunLayout
from iac_tf.training.fit import TrainResult

ROOT = pathlib.Path(__file__).resolve().parents[2]


class _Prepared:
    """What a unit reads of the prepared data."""

    in_channels, num_classes = 1, 2
    class_values = ((1,), (2,))

    def dataset(self, split, batch_size, shuffle=False, seed=0):
        return (split, batch_size)

    def num_slices(self, split):
        return 7


def _fake_fit(folder: pathlib.Path, calls: list):
    def fit(train, val, scorer, rule=None):
        calls.append((train(1, 0), val(1, 0), scorer, rule))
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "history.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["epoch", "loss", "val_loss", "soft_dice", "val_soft_dice"])
            w.writerows([[1, 0.9, 0.8, 0.1, 0.2], [2, 0.7, 0.6, 0.3, 0.4]])
        (folder / "summary.json").write_text(json.dumps(
            {"best_epoch": 2, "best_val_soft_dice": 0.4, "best_score": 0.4}))
        (folder / "best_model.keras").write_text("model")
        return TrainResult(run_dir=folder, best_model_path=folder / "best_model.keras",
                           best_epoch=2, best_val_soft_dice=0.4, history=[], seconds=1.0,
                           monitor="val_soft_dice", best_score=0.4)
    return fit


@pytest.fixture
def cfg(tmp_path):
    return load_experiment(ROOT / "experiments" / "sample.yaml",
                           {"output_dir": str(tmp_path), "name": "run"})


def test_a_unit_trains_once_registers_and_is_then_skipped(cfg, caplog):
    folder = RunLayout.of(cfg).compare("toy")
    calls = []
    unit = TrainingUnit("toy", "toy unit", folder, Stage1Config(epochs=2, batch_size=3),
                        _fake_fit(folder, calls), "a toy")
    seen = []
    with caplog.at_level(logging.INFO, logger="iac_tf"):
        first = train_unit(cfg, _Prepared(), unit, on_trained=seen.append)
        again = train_unit(cfg, _Prepared(), unit, on_trained=seen.append)
    assert len(calls) == 1 and seen == [first]
    train, val, scorer, rule = calls[0]
    assert train == ("train_dt", 3) and val == ("val_dt", 3) and scorer is None
    assert (rule.classes, rule.mode, rule.metric) == (((1,), (2,)), "exclusive", "labels")
    assert (folder / "learning_curves.png").is_file()
    assert again.best_epoch == 2 and again.seconds == 0.0
    assert RunLayout(cfg.run_dir).model_paths() == {"toy": folder / "best_model.keras"}
    text = caplog.text
    assert "toy unit: a toy ->" in text and "toy unit: complete (best val_dt soft Dice 0.4000" in text


def test_a_unit_that_needs_its_export_is_unfinished_without_it(cfg):
    folder = RunLayout.of(cfg).stage(3)
    unit = TrainingUnit("iac", "Stage III iac", folder, Stage1Config(epochs=2), _fake_fit(folder, []),
                        "", needs_export=True)
    _fake_fit(folder, [])(lambda e, s: None, lambda e, s: None, None)
    assert finished(unit) is None
    (folder / "savedmodel").mkdir()
    assert finished(unit).best_epoch == 2


def test_a_unit_with_fewer_epochs_than_asked_is_unfinished(cfg):
    folder = RunLayout.of(cfg).stage(1)
    _fake_fit(folder, [])(lambda e, s: None, lambda e, s: None, None)
    assert finished(TrainingUnit("u", "u", folder, Stage1Config(epochs=3), None, "")) is None
    assert finished(TrainingUnit("u", "u", folder, Stage1Config(epochs=2), None, "")) is not None


def test_every_kind_of_model_is_a_unit_with_its_own_name_folder_and_settings(cfg):
    layout = RunLayout.of(cfg)
    s1 = stage1_unit(cfg, _Prepared())
    assert (s1.name, s1.folder, s1.settings) == ("unet", layout.stage(1), cfg.stage1)
    cont = unet_continued_unit(cfg)
    assert (cont.name, cont.folder) == ("unet_continued", layout.compare("unet_continued"))
    assert cont.settings.epochs == cfg.stage3.epochs and type(cont.settings) is TrainingSettings
    comp = comparison_unit(cfg, "attention")
    assert (comp.name, comp.folder, comp.settings) == ("attention", layout.compare("attention"),
                                                       cfg.stage3)
