"""A given U-Net is scored on val_dt before Stage II, with the val_dt table's scoring, next to its
own number (``unet.expected_dice``); far below it: a warning naming preprocessing."""

import json
import logging

import numpy as np
import pytest

from iac_tf.config import ConfigError
from iac_tf.data import prepare_dataset
from iac_tf.evaluation.report import evaluate_models
from iac_tf.config.experiment import load_experiment
from iac_tf.pipeline import given_unet, stages
from iac_tf.pipeline.common import label_rule
from iac_tf.run_unet import adopt
from iac_tf.pipeline.given_unet import EXPECTED_DICE_TOLERANCE, score_given_unet
from iac_tf.run_layout import RunLayout
from tests.data import fixtures
from tests.tiny import tiny_unet, write_config


def everything_model():
    """Sigmoid 1x1 conv with a large bias: every pixel of both classes is foreground."""
    from iac_tf._keras import keras

    inp = keras.Input((32, 32, 1))
    conv = keras.layers.Conv2D(2, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.zeros((1, 1, 1, 2), np.float32), np.full(2, 10.0, np.float32)])
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("given")
    dataset = fixtures.write_nnunet(folder / "raw", cases=tuple(f"c{i}" for i in range(10)))
    unet = folder / "unet.keras"
    tiny_unet(32, f=4, classes=2).save(str(unet))
    return folder, dataset, unet


def _cfg(setup, tmp_path, **extra):
    """The config of a run that has taken its copy of the given U-Net (as every stage does
    before it scores it)."""
    folder, dataset, unet = setup
    cfg = load_experiment(write_config(tmp_path, dataset, folder / "cache",
                                       unet__pretrained=str(unet), **extra))
    with RunLayout.of(cfg).lock():  # as every stage writes into its run: holding the run's lock
        RunLayout.of(cfg).claim()
        adopt(RunLayout.of(cfg), cfg.unet.pretrained)
    return cfg


def reference_dice(masks, case_ids):
    """Mean over cases of the mean over classes of 2|G| / (|G| + |P|) with P = every pixel."""
    means = []
    for case in dict.fromkeys(case_ids):
        m = masks[np.asarray(case_ids) == case].astype(np.int64)
        g = m.sum(axis=(0, 1, 2))
        means.append(np.mean(2 * g / (g + m[..., 0].size)))
    return float(np.mean(means))


@pytest.mark.parametrize("metric", ["paper_channels", "labels"])
def test_the_score_is_the_tables_and_is_recorded(setup, tmp_path, caplog, metric):
    cfg = _cfg(setup, tmp_path, evaluation__metric=metric)
    prepared = prepare_dataset(cfg.data, progress=False)
    model = everything_model()
    with caplog.at_level(logging.INFO, logger="iac_tf"), RunLayout.of(cfg).lock():
        record = score_given_unet(cfg, prepared, model)
    _, masks, case_ids = prepared.arrays("val_dt")
    if metric == "paper_channels":  # every channel alone: every pixel predicted, every class
        assert record["mean_dice"] == pytest.approx(reference_dice(masks, case_ids), abs=1e-12)
    assert record["cases"] == len(set(case_ids)) >= 2 and record["split"] == "val_dt"
    assert record["metric"] == metric
    # the same number as the val_dt Dice table under the run's rule
    table = evaluate_models({"unet": model, "same": model}, *prepared.arrays("val_dt"),
                            prepared.class_names, tmp_path / "table",
                            rule=label_rule(cfg, prepared))
    assert table["mean_dice"]["unet"] == pytest.approx(record["mean_dice"], abs=1e-12)
    assert json.loads(RunLayout.of(cfg).unet_score.read_text()) == record
    assert record["expected_dice"] is None and not record["below_expected"]
    assert "set unet.expected_dice" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_far_below_its_own_number_is_a_warning_naming_preprocessing(setup, tmp_path, caplog):
    cfg = _cfg(setup, tmp_path, unet__expected_dice=0.95)
    prepared = prepare_dataset(cfg.data, progress=False)
    with caplog.at_level(logging.INFO, logger="iac_tf"), RunLayout.of(cfg).lock():
        record = score_given_unet(cfg, prepared, everything_model())
    assert record["mean_dice"] < 0.95 - EXPECTED_DICE_TOLERANCE and record["below_expected"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for cause in ("preprocessing", "intensity normalisation", "spacing or zoom",
                  "channel order", "patch size"):
        assert cause in warnings[0]
    assert "its own number (unet.expected_dice) 0.9500" in caplog.text
    # within the tolerance: no warning
    caplog.clear()
    near = _cfg(setup, tmp_path, unet__expected_dice=round(record["mean_dice"] + 0.09, 4))
    with caplog.at_level(logging.INFO, logger="iac_tf"), RunLayout.of(near).lock():
        assert not score_given_unet(near, prepared, everything_model())["below_expected"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_stage2_scores_the_given_unet_before_searching(setup, tmp_path, monkeypatch):
    cfg = _cfg(setup, tmp_path, unet__expected_dice=0.9)
    seen = {}

    def no_search(*args, **kwargs):
        seen["record"] = json.loads(RunLayout.of(cfg).unet_score.read_text())
        raise KeyboardInterrupt  # stop here: the search itself is tested elsewhere

    monkeypatch.setattr(stages, "search", no_search)
    with pytest.raises(KeyboardInterrupt):
        stages.run_stage2(cfg)
    assert seen["record"]["unet"] == str(setup[2]) and seen["record"]["expected_dice"] == 0.9


def test_expected_dice_is_a_dice_and_never_blocks_a_rerun(setup, tmp_path):
    with pytest.raises(ConfigError, match="expected_dice must be in \\(0, 1\\]"):
        _cfg(setup, tmp_path, unet__expected_dice=85)
    from iac_tf.run_records import NON_BLOCKING

    assert "unet.expected_dice" in NON_BLOCKING
    assert given_unet.EXPECTED_DICE_TOLERANCE == 0.1
