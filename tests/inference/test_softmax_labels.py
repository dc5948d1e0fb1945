"""One label rule for a softmax U-Net: where its probabilities tie (two classes, or a class and
the background) or two classes both beat the background, ``iac predict``, the export's graph
``labels``, the client, the Dice tables and the training's hard Dice all take the same argmax
(the first channel of a tie), checked against NumPy's argmax."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.evaluation.metrics import case_dice
from iac_tf.inference.client import load_export, predict_nifti
from iac_tf.inference.export import export_serving
from iac_tf.labels import LabelRule, output_of
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.predict import model_rule, predict_volume
from iac_tf.inference.tiling import keras_predictor
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.losses import DiceCoefficient
from tests.data.fixtures import save, volume

CLASSES = ((1,), (2,))
PREP = Preprocessing(patch_size=32, zoom=1.0, reorient=True, nonzero=False, ct_window=(),
                     ct_percentiles=(0.5, 99.5), class_names=("organ", "lesion"),
                     classes=CLASSES, modalities=("T2",))

#: softmax probabilities (background, organ, lesion) of each model, everywhere, and the label
#: NumPy's argmax (first of a tie) gives
CASES = {
    "classes_tie": ([0.1, 0.45, 0.45], 1),   # both classes beat the background and tie
    "background_ties_a_class": ([0.4, 0.4, 0.2], 0),
    "second_class": ([0.2, 0.3, 0.5], 2),
}


def constant_softmax(probs) -> keras.Model:
    """A 1x1 convolution with zero kernel and bias log(probs), then a softmax layer: the same
    probabilities at every pixel, ties exact."""
    inp = keras.Input((32, 32, 1))
    conv = keras.layers.Conv2D(3, 1, name="head")
    model = keras.Model(inp, keras.layers.Activation("softmax")(conv(inp)))
    conv.set_weights([np.zeros((1, 1, 1, 3), np.float32), np.log(np.asarray(probs, np.float32))])
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_consumer_takes_the_same_argmax(tmp_path, case):
    want_probs, want = CASES[case]
    model = constant_softmax(want_probs)
    x = np.random.default_rng(0).normal(0, 1, (4, 32, 32, 1)).astype(np.float32)
    probs = model.predict(x, verbose=0)
    reference = np.argmax(probs, axis=-1)  # NumPy: the first channel of a tie
    assert (reference == want).all()
    if case != "second_class":
        tied = [k for k, p in enumerate(want_probs) if p == max(want_probs)]
        assert (probs[..., tied[0]] == probs[..., tied[1]]).all()  # an exact tie
    # the rule of a model with N + 1 outputs is the softmax rule
    assert output_of(3, CLASSES) == "softmax"
    rule = LabelRule.for_outputs(CLASSES, 3)
    assert rule.mode == "softmax" and rule.output == "softmax"
    labels = rule.labels(probs)
    np.testing.assert_array_equal(labels, reference)  # label values = channel index here
    # the tables: the channels of those labels, per case
    masks = np.stack([reference == 1, reference == 2], axis=-1).astype(np.float32)
    masks[:2] = 0.0  # two slices without any class
    per_case = case_dice(masks, probs, ["a", "a", "b", "b"], rule)
    pred = np.stack([reference == 1, reference == 2], axis=-1)
    for case_id, rows in (("a", slice(0, 2)), ("b", slice(2, 4))):
        g, p = masks[rows] > 0.5, pred[rows]
        inter, total = (g & p).sum(axis=(0, 1, 2)), g.sum(axis=(0, 1, 2)) + p.sum(axis=(0, 1, 2))
        expect = np.where(total > 0, 2 * inter / np.maximum(total, 1), np.nan)
        np.testing.assert_allclose(per_case[case_id], expect, equal_nan=True)
    # the training's hard Dice (the TensorFlow twin of the rule)
    metric = DiceCoefficient(eps=1.0, threshold=0.5, classes=rule.classes, label_mode=rule.mode)
    metric.update_state(masks, probs)
    hard = DiceCoefficient(eps=1.0)
    hard.update_state(masks, pred.astype(np.float32))
    assert float(metric.result()) == pytest.approx(float(hard.result()), abs=1e-7)
    # iac predict: the whole-volume path (windows, Gaussian blending, resampling)
    path = save(volume(3), tmp_path / "scan_0000.nii.gz")
    loaded = LoadedModel(path, keras_predictor(model), (32, 32, 1), 3, model)
    assert model_rule(loaded, PREP).mode == "softmax"
    predicted, volume_probs = predict_volume(loaded, [path], PREP, ("T2",), tta=False)
    assert volume_probs.shape[-1] == 3 and (predicted == want).all()
    # the export: its graph labels each window by the same argmax, its client labels the volume
    export_serving(model, tmp_path / "serving", CLASSES, preprocessing=PREP)
    info = json.loads((tmp_path / "serving" / "preprocessing.json").read_text())
    assert info["label_rule"]["label_mode"] == "softmax"
    served = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    graph = np.asarray(served(image=tf.constant(x))["labels"])
    np.testing.assert_array_equal(graph, reference)
    np.testing.assert_array_equal(predict_nifti(path, load_export(tmp_path / "serving"),
                                                tta=False), predicted)


def test_a_model_whose_outputs_suit_neither_output_is_refused(tmp_path):
    model = constant_softmax([0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="3 output channel\\(s\\) for 1 class\\(es\\): expected "
                                         "1 .* or 2"):
        LabelRule.for_outputs(((1,),), 3)
    from iac_tf.errors import UserError

    with pytest.raises(UserError, match="expected 1 .* or 2"):
        export_serving(model, tmp_path / "out", ((1,),))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="exclude each other"):  # nested regions
        LabelRule.for_outputs(((1, 2), (2,)), 3)
