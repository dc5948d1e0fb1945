"""``iac export``: the TF-Serving SavedModel, served through its signature, equals the Keras
model (an IAC U-Net with searched cells), and ``iac predict`` accepts the export."""

import json

import nibabel as nib
import numpy as np

from iac_tf._keras import tf
from iac_tf.cli import main
from iac_tf.files import EXPORT_MARKER, MANIFEST
from iac_tf.genotype import Genotype
from iac_tf.inference import LoadedModel, predict_cases
from iac_tf.inference.api import load_run_preprocessing
from iac_tf.inference.export import export_serving
from iac_tf.inference.tiling import keras_predictor
from iac_tf.labels import probabilities_to_labels
from iac_tf.training.stage3 import build_iac_unet
from tests.inference.helpers import make_run
from tests.tiny import tiny_unet

EDGES = ((("sep_conv_3x3", 1), ("skip_connect", 0)), (("dil_conv_3x3", 2), ("max_pool_3x3", 0)))
BRATS = ((1, 2, 3), (1, 3), (3,))


def test_exported_iac_unet_serves_the_keras_outputs(tmp_path):
    model = build_iac_unet(tiny_unet(size=32, channels=2, classes=3, f=4), Genotype(EDGES),
                           cell_channels=4)
    check = export_serving(model, tmp_path / "serving", BRATS)
    assert check["labels_equal"] and check["max_abs_difference"] <= 1e-5
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    assert not [p for p in (tmp_path / "serving").iterdir()  # no temp folders left
                if p.name.startswith(".") and p.name not in (EXPORT_MARKER, MANIFEST)]
    fn = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    spec = fn.structured_input_signature[1]["image"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 32, 32, 2]
    x = np.random.default_rng(7).normal(size=(3, 32, 32, 2)).astype(np.float32) * 2
    out = fn(image=tf.constant(x))
    want = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(out["probabilities"]), want, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["labels"]), probabilities_to_labels(want, BRATS))


def test_cli_export_of_a_run_and_predict_with_the_export(tmp_path, capsys):
    run_dir, ds, model = make_run(tmp_path)
    out = tmp_path / "export"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert "labels equal" in capsys.readouterr().out
    info = json.loads((out / "preprocessing.json").read_text())
    assert info["signature"] == "serving_default" and info["normalisation_in_graph"] is False
    assert info["preprocessing"]["patch_size"] == 48
    case = [str(ds / "imagesTr" / f"case_a_{c:04d}.nii.gz") for c in range(2)]
    prep = load_run_preprocessing(run_dir)
    keras_model = LoadedModel(run_dir, keras_predictor(model), (48, 48, 2), 2)
    predict_cases(keras_model, case, tmp_path / "keras.nii.gz", prep, progress=False)
    assert main(["predict", str(out), "--config", str(run_dir / "config.yaml")] + case
                + [str(tmp_path / "served.nii.gz")]) == 0
    a, b = (np.asarray(nib.load(str(tmp_path / f)).dataobj) for f in ("keras.nii.gz",
                                                                        "served.nii.gz"))
    np.testing.assert_array_equal(a, b)
