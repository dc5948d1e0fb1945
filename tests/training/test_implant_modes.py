"""implant_mode in Stages II and III, arch_weight_decay 0, and the multi-model evaluation."""

import csv
import json

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.evaluation.report import evaluate_models
from iac_tf.training.stage2 import Stage2Config, build_supernet
from iac_tf.training.stage3 import Stage3Config, build_iac_unet
from tests.training.test_stage3 import GENOTYPE
from tests.tiny import tiny_unet
from tests.evaluation.helpers import ConstModel, half_masks

SIZE = 16


def test_residual_supernet_is_the_unet_at_init_and_arch_gets_no_gradient():
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, levels=1)
    x = np.random.default_rng(0).random((2, SIZE, SIZE, 1), np.float32)
    y = (x > 0.5).astype(np.float32)
    cfg = Stage2Config(cell_channels=4, partial_channels=2, implant_mode="residual",
                       arch_weight_decay=0.0)
    supernet = build_supernet(unet, cfg)
    np.testing.assert_array_equal(supernet(x).numpy(), unet(x).numpy())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(supernet(x, training=True) - y))
    grads = tape.gradient(loss, supernet.arch_variables)
    assert all(g is None or not np.any(g.numpy()) for g in grads)


def test_stage_configs_accept_the_new_keys():
    with pytest.raises(ValueError, match="arch_weight_decay"):
        Stage2Config(arch_weight_decay=-1.0)
    assert Stage2Config(arch_weight_decay=0.0).arch_weight_decay == 0.0
    cfg = Stage3Config()
    assert cfg.implant_mode == "replace" and cfg.cell_channels is None and cfg.evaluate_initial
    with pytest.raises(ValueError, match="extra_implant_modes"):
        Stage3Config(implant_mode="residual", extra_implant_modes=("residual",))
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, levels=1)
    x = np.ones((1, SIZE, SIZE, 1), np.float32)
    model = build_iac_unet(unet, GENOTYPE, 4, "residual")
    np.testing.assert_array_equal(model(x).numpy(), unet(x).numpy())


def test_evaluate_models_one_column_per_method(tmp_path):
    images, masks = half_masks()
    models = {"unet": ConstModel(0.0), "iac": ConstModel(1.0), "unet_continued": ConstModel(0.0)}
    report = evaluate_models(models, images, masks, ["p1", "p1", "p2", "p2"], ["lesion"], tmp_path,
                             pairs=[("unet_continued", "iac")])
    rows = list(csv.reader(open(tmp_path / "dice_per_case.csv")))
    assert rows[0] == ["split", "metric", "case", "class", "unet", "iac", "unet_continued"] and len(rows) == 3
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert set(stats["methods"]) == {"iac", "unet_continued"}
    assert stats["overall"]["mean_candidate"] == pytest.approx(2 * 16 / (16 + 32))
    pair = stats["pairs"]["iac_vs_unet_continued"]["overall"]
    assert pair["mean_baseline"] == 0.0 and pair["mean_gain"] == pytest.approx(2 / 3)
    assert "`iac` with `unet_continued`" in (tmp_path / "dice_table.md").read_text()
    assert report["methods"]["unet_continued"]["overall"]["mean_gain"] == 0.0
