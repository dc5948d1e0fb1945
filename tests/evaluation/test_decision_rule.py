"""One rule from probabilities to labels, for every consumer: a model that calls voxels grey AND
white matter (two classes that exclude each other) gets the same labels and the same Dice from
the epoch-selection metrics (``val_soft_dice``, ``val_case_dice``), the val_dt table, the label
painting of ``iac predict``, the export's ``labels`` output and the overlays. Expected values
come from a NumPy reference written here.

Covers: iac_tf/pipeline/common.py
"""

from __future__ import annotations

import csv
import json
import pathlib
import types

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.config.stages import Stage1Config
from iac_tf.evaluation.metrics import case_dice
from iac_tf.evaluation.report import evaluate_models
from iac_tf.evaluation.volumetric import score_case
from iac_tf.inference.export import ServingModule
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.predict import predict_volume
from iac_tf.inference.tiling import keras_predictor
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.losses import DiceCoefficient
from iac_tf.pipeline.common import case_scorer, label_rule
from iac_tf.reporting.figures import prediction_masks
from iac_tf.training.fit import compile_for_training
from tests.data.fixtures import save

GREY_WHITE = ((1,), (2,))  # labels that exclude each other (an MNI-style tissue map)
NAMES = ["grey", "white"]
SIZE = 8


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def pixel_model(size=SIZE):
    """1x1 convolution + sigmoid: p_grey = s(4x), p_white = s(2x + 0.5). Both are above 0.5
    wherever x > 0 (double labelling); white is the more probable one for 0 < x < 0.25."""
    inp = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(2, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.array([[[[4.0, 2.0]]]], np.float32), np.array([0.0, 0.5], np.float32)])
    return model


def ref_probs(x):
    x = np.asarray(x, np.float64)[..., 0]
    return np.stack([_sigmoid(4 * x), _sigmoid(2 * x + 0.5)], -1)


def ref_labels(probs):
    """Reference rule for exclusive classes: the most probable class above 0.5, else 0."""
    best = np.argmax(probs, -1)
    return np.where(np.max(probs, -1) > 0.5, best + 1, 0)


def ref_channels(labels):
    return np.stack([labels == 1, labels == 2], -1)


def ref_dice(gt, pred):
    """2TP / (2TP + FP + FN) per class over all voxels; NaN where both are empty."""
    out = []
    for k in range(gt.shape[-1]):
        g, p = gt[..., k].astype(bool), pred[..., k].astype(bool)
        denom = g.sum() + p.sum()
        out.append(np.nan if denom == 0 else 2 * (g & p).sum() / denom)
    return np.array(out)


def ref_soft_dice(gt, soft, eps=1.0):
    """Mean over samples and classes of the soft Dice with smoothing ``eps``."""
    inter = (gt * soft).sum(axis=(1, 2))
    return float(np.mean((2 * inter + eps) / (gt.sum(axis=(1, 2)) + soft.sum(axis=(1, 2)) + eps)))


@pytest.fixture(scope="module")
def slices():
    """Four 8x8 slices of two cases; ground truth: grey where -0.6 < x < 0.1, white above."""
    x = np.linspace(-1.03, 0.97, 4 * SIZE * SIZE).reshape(4, SIZE, SIZE, 1).astype(np.float32)
    # keep clear of the threshold (x = 0) and of the tie p_grey = p_white (x = 0.25)
    assert np.min(np.abs(x)) > 1e-3 and np.min(np.abs(x - 0.25)) > 1e-3
    gt_labels = np.where(x[..., 0] > 0.1, 2, np.where(x[..., 0] > -0.6, 1, 0))
    masks = ref_channels(gt_labels).astype(np.float32)
    probs = ref_probs(x)
    assert ((probs > 0.5).sum(-1) == 2).sum() > 20  # the model double-labels
    labels = ref_labels(probs)
    return x, masks, ["a", "a", "b", "b"], probs, labels


@pytest.fixture(scope="module")
def model():
    return pixel_model()


def _rule(metric="labels"):
    """The rule the pipeline derives from the prepared data and the config."""
    prepared = types.SimpleNamespace(class_values=GREY_WHITE)
    cfg = types.SimpleNamespace(evaluation=types.SimpleNamespace(metric=metric),  # Stage I U-Net
                                unet=types.SimpleNamespace(pretrained=None, output="sigmoid"))
    return label_rule(cfg, prepared)


def test_the_pipeline_rule_is_the_exclusive_label_rule():
    rule = _rule()
    assert (rule.mode, rule.metric) == ("exclusive", "labels")
    assert _rule("paper_channels").metric == "paper_channels"


def test_selection_soft_dice_scores_the_rule(slices, model):
    """``soft_dice``/``val_soft_dice``: the soft Dice of the rule's soft channels (each voxel
    keeps its most probable class), whose hard form is the label map; with the threshold the
    metric is the hard Dice of the label map."""
    x, masks, _, probs, labels = slices
    compile_for_training(model, Stage1Config(), _rule())
    got = model.evaluate(x, masks, batch_size=len(x), verbose=0, return_dict=True)["soft_dice"]
    winner = np.where(np.arange(2) == np.argmax(probs, -1)[..., None], probs, 0.0)
    assert np.array_equal(winner > 0.5, ref_channels(labels))
    assert got == pytest.approx(ref_soft_dice(masks, winner), abs=1e-5)
    assert got != pytest.approx(ref_soft_dice(masks, probs), abs=1e-3)  # not per channel
    hard = DiceCoefficient(threshold=0.5, classes=GREY_WHITE)
    hard.update_state(masks, model(x))
    assert float(hard.result()) == pytest.approx(
        ref_soft_dice(masks, ref_channels(labels).astype(float)), abs=1e-5)


def test_selection_case_dice_and_val_table_score_the_labels(slices, model, tmp_path):
    x, masks, ids, probs, labels = slices
    want = {c: ref_dice(masks[np.array(ids) == c], ref_channels(labels)[np.array(ids) == c])
            for c in ("a", "b")}
    paper = {c: ref_dice(masks[np.array(ids) == c], (probs > 0.5)[np.array(ids) == c])
             for c in ("a", "b")}
    assert not np.allclose(want["b"], paper["b"])  # double labels make the two protocols differ
    # val_case_dice: the per-case hard Dice that selects the epoch
    prepared = types.SimpleNamespace(arrays=lambda split: (x, masks, ids),
                                     cache_path=pathlib.Path("cache.h5"), class_values=GREY_WHITE)
    scorer = case_scorer(prepared, Stage1Config(monitor="val_case_dice"), rule=_rule())
    mean = np.mean([np.nanmean(want[c]) for c in ("a", "b")])
    assert scorer(model) == pytest.approx(mean, abs=1e-6)
    # the val_dt table: every output names the split and the rule
    report = evaluate_models({"unet": model, "iac": model}, x, masks, ids, NAMES, tmp_path,
                             split="val_dt", selected_on="val_dt", rule=_rule())
    with open(tmp_path / "dice_per_case.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:4] == ["split", "metric", "case", "class"]
    for row in rows:
        assert (row["split"], row["metric"]) == ("val_dt", "labels")
        expected = want[row["case"]][NAMES.index(row["class"])]
        assert float(row["iac"]) == pytest.approx(expected, abs=1e-4)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["split"] == "val_dt" and stats["rule"]["metric"] == "labels"
    assert stats["rule"]["label_mode"] == "exclusive"
    table = (tmp_path / "dice_table.md").read_text()
    assert "Scored on: `val_dt`" in table and "Decision rule: `labels` (one label per voxel" in table
    assert report["mean_dice"]["iac"] == pytest.approx(mean, abs=1e-4)
    # the paper's protocol stays available by name
    evaluate_models({"unet": model, "iac": model}, x, masks, ids, NAMES, tmp_path / "paper",
                    split="val_dt", selected_on="val_dt", rule=_rule("paper_channels"))
    with open(tmp_path / "paper" / "dice_per_case.csv", newline="") as fh:
        paper_rows = list(csv.DictReader(fh))
    assert {r["metric"] for r in paper_rows} == {"paper_channels"}
    for row in paper_rows:
        assert float(row["iac"]) == pytest.approx(
            paper[row["case"]][NAMES.index(row["class"])], abs=1e-4, nan_ok=True)
    assert "Decision rule: `paper_channels`" in (tmp_path / "paper" / "dice_table.md").read_text()


def test_export_labels_and_overlays_are_the_rule(slices, model):
    x, _, _, _, labels = slices
    served = ServingModule(model, GREY_WHITE).serve(tf.constant(x))
    np.testing.assert_array_equal(np.asarray(served["labels"]), labels)
    np.testing.assert_array_equal(prediction_masks(model.predict(x, verbose=0), _rule()),
                                  ref_channels(labels))


def test_predict_paints_the_rule_and_its_dice_is_the_tables(tmp_path, model):
    """``iac predict``'s label volume is the rule of its probabilities, and the Dice of that
    volume (``iac evaluate-folder``, the volumetric tables) equals the hard Dice of the slice
    tables on the same probabilities."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1000, (SIZE, SIZE, 3)).astype(np.float32)
    path = save(image, tmp_path / "case_0000.nii.gz")
    prep = Preprocessing(patch_size=SIZE, zoom=1.0, reorient=True, nonzero=False, ct_window=(),
                         ct_percentiles=(0.5, 99.5), class_names=tuple(NAMES),
                         classes=GREY_WHITE, modalities=("CT",))
    loaded = LoadedModel(pathlib.Path("pixel"), keras_predictor(model), (SIZE, SIZE, 1), 2)
    labels, probs = predict_volume(loaded, [path], prep, ("CT",), batch_size=4)
    assert ((probs > 0.5).sum(-1) == 2).sum() > 10  # double labelled voxels
    np.testing.assert_array_equal(labels, ref_labels(probs))
    gt = np.where(image > 700, 2, np.where(image > 300, 1, 0))
    volume = [d for d, _ in score_case(labels, gt, GREY_WHITE, (1.0, 1.0, 1.0))]
    slices = case_dice(ref_channels(gt), probs, ["v"] * SIZE, _rule())["v"]
    np.testing.assert_allclose(volume, slices, atol=1e-9)
    np.testing.assert_allclose(volume, ref_dice(ref_channels(gt), ref_channels(ref_labels(probs))))
