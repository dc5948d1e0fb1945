"""``iac predict``: a run folder's model on NIfTI cases; output grid, labels equal to the model's
own slice predictions mapped back by hand, large scans tiled without cut-off, orientation,
multi-channel cases, probabilities, bad inputs, and the volumetric scores of ``iac run``.

Covers: iac_tf/inference/__init__.py, iac_tf/inference/model_source.py
Covers: iac_tf/inference/run_scores.py
"""

import json
import pathlib
import types

import nibabel as nib
import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.cli import main
from iac_tf.data.nifti import load_case
from iac_tf.data.preprocess import apply_stats, intensity_stats, preprocess_case
from iac_tf.config.experiment import load_experiment
from iac_tf.inference import LoadedModel, Preprocessing, predict_cases, probabilities_to_labels
from iac_tf.inference.run_scores import volumetric_scores
from iac_tf.inference.tiling import keras_predictor
from iac_tf.run_layout import RunLayout, register_model
from tests.data.fixtures import KITS_AFFINE, RAS, SHAPE, save, to_kits_order, volume
from tests.inference.helpers import PATCH, make_run

CLASSES = ((1,), (2,))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run folder for the module (building and saving the U-Net is the slow part)."""
    return make_run(tmp_path_factory.mktemp("run"))


def hand_labels(model, ds, case, tta=True):
    """Training preprocessing of ``case`` (centre crop = the whole 40x36 slice padded to 48:
    one window, so the Gaussian weights cancel), the model on those slices (with ``tta`` the
    mean over the slices as they are and flipped along x, y and both, flipped back), the
    padding cut off by hand: labels (X, Y, Z)."""
    paths = [ds / "imagesTr" / f"{case}_{c:04d}.nii.gz" for c in range(2)]
    image, label, _ = load_case(paths, ds / "labelsTr" / f"{case}.nii.gz", (0, 1, 2), True)
    images, _, keep = preprocess_case(image, label, CLASSES, ("T2", "ADC"), patch_size=PATCH,
                                      crop="center", empty_slice_fraction=1.0)
    assert list(keep) == list(range(SHAPE[2]))  # every slice seen
    flips = [(), (1,), (2,), (1, 2)] if tta else [()]
    probs = sum(np.flip(np.asarray(model(np.flip(images, axes), training=False)), axes)
                for axes in flips) / len(flips)
    x0, y0 = (PATCH - SHAPE[0]) // 2, (PATCH - SHAPE[1]) // 2
    probs = probs[:, x0: x0 + SHAPE[0], y0: y0 + SHAPE[1]]
    return np.moveaxis(probabilities_to_labels(probs, CLASSES), 0, 2)


def test_run_folder_on_an_imagests_folder_equals_the_model_by_hand(run, tmp_path, capsys):
    run_dir, ds, model = run
    out = tmp_path / "pred"
    assert main(["predict", str(run_dir), str(ds / "imagesTr"), str(out),
                 "--save-probabilities"]) == 0
    assert "s per case" in capsys.readouterr().out
    for case in ("case_a", "case_c"):
        src = nib.load(str(ds / "imagesTr" / f"{case}_0000.nii.gz"))
        pred = nib.load(str(out / f"{case}.nii.gz"))
        assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
        labels = np.asarray(pred.dataobj)
        np.testing.assert_array_equal(labels, hand_labels(model, ds, case))
        probs = np.asarray(nib.load(str(out / f"{case}_probabilities.nii.gz")).dataobj)
        assert probs.shape == SHAPE + (2,)
        np.testing.assert_array_equal(probabilities_to_labels(probs, CLASSES), labels)
    assert not [p for p in out.iterdir()  # no temp files left, only the outputs' manifest
                if p.name.startswith(".") and p.name != ".iac-manifest"]


def test_no_tta_step_size_and_device(run, tmp_path, capsys):
    run_dir, ds, model = run
    case = [str(ds / "imagesTr" / f"case_c_{c:04d}.nii.gz") for c in range(2)]
    out = tmp_path / "no_tta.nii.gz"
    assert main(["predict", str(run_dir)] + case + [str(out), "--no-tta", "--step-size", "0.25",
                                                     "--device", "cpu"]) == 0
    assert "(mirroring off, step size 0.25, Gaussian blending, device cpu)" in \
        capsys.readouterr().out
    plain = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(plain, hand_labels(model, ds, "case_c", tta=False))
    assert not np.array_equal(plain, hand_labels(model, ds, "case_c", tta=True))
    for bad in (["--step-size", "0"], ["--step-size", "1.5"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            main(["predict", str(run_dir)] + case + [str(tmp_path / "x.nii.gz")] + bad)
        assert "--step-size" in capsys.readouterr().err or "tpu" in bad


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="a GPU is visible")
def test_device_gpu_without_a_gpu_is_refused_before_writing(run, tmp_path, capsys):
    run_dir, ds, _ = run
    case = [str(ds / "imagesTr" / f"case_c_{c:04d}.nii.gz") for c in range(2)]
    assert main(["predict", str(run_dir)] + case + [str(tmp_path / "o"), "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iac: error: --device gpu: TensorFlow sees no GPU") and "--device cpu" in err
    assert not (tmp_path / "o").exists()


def test_non_ras_file_is_predicted_in_its_own_voxel_order(run, tmp_path):
    run_dir, ds, model = run
    paths = []
    for c in range(2):  # case_a stored slices-first with the KiTS affine
        ras = np.asarray(nib.load(str(ds / "imagesTr" / f"case_a_{c:04d}.nii.gz")).dataobj)
        paths.append(save(to_kits_order(ras), tmp_path / "kits" / f"case_a_{c:04d}.nii.gz",
                          KITS_AFFINE))
    out = tmp_path / "one.nii.gz"
    assert main(["predict", str(run_dir)] + [str(p) for p in paths] + [str(out)]) == 0
    pred = nib.load(str(out))
    assert pred.shape == to_kits_order(np.zeros(SHAPE)).shape
    assert np.allclose(pred.affine, KITS_AFFINE)
    np.testing.assert_array_equal(np.asarray(nib.as_closest_canonical(pred).dataobj),
                                  hand_labels(model, ds, "case_a"))


def threshold_model(patch):
    """Conv 1x1 (weight 1, bias 0) + sigmoid: label 1 exactly where the normalised image > 0."""
    from iac_tf._keras import keras

    inp = keras.Input((patch, patch, 1))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    return LoadedModel(pathlib.Path("threshold"), keras_predictor(model), (patch, patch, 1), 1)


def prep(zoom=1.0):
    return Preprocessing(patch_size=32, zoom=zoom, reorient=True, nonzero=False, ct_window=(),
                         ct_percentiles=(0.5, 99.5), class_names=("fg",), classes=((1,),),
                         modalities=("CT",))


@pytest.mark.parametrize("zoom", [1.0, 0.5])
def test_scan_larger_than_the_model_input_is_covered(tmp_path, zoom):
    """300 x 260 in-plane, a 32 x 32 model: bright blocks at the four corners must be found."""
    image = np.full((300, 260, 3), -800.0, np.float32)
    for xs, ys in [(slice(0, 20), slice(0, 20)), (slice(280, 300), slice(240, 260)),
                   (slice(0, 20), slice(240, 260)), (slice(280, 300), slice(0, 20)),
                   (slice(140, 160), slice(120, 140))]:
        image[xs, ys] = 300.0
    path = save(image, tmp_path / "ct_0000.nii.gz", RAS)
    summary = predict_cases(threshold_model(32), [path], tmp_path / "out", prep(zoom),
                            progress=False)
    labels = np.asarray(nib.load(summary[0]["path"]).dataobj)
    assert labels.shape == image.shape
    expected = apply_stats(image, intensity_stats(image, "CT")) > 0
    if zoom == 1.0:
        np.testing.assert_array_equal(labels, expected)
    else:  # linear zoom there and back: only block edges may move
        assert (labels == expected).mean() > 0.99
        for x, y in [(5, 5), (295, 255), (5, 255), (295, 5), (150, 130)]:
            assert labels[x, y, 1] == 1


def write_case(folder, name, arrays_affines):
    for c, (arr, aff) in enumerate(arrays_affines):
        save(arr, folder / f"{name}_{c:04d}.nii.gz", aff)
    return folder


@pytest.mark.parametrize("make, message", [
    (lambda d: write_case(d, "x", [(volume(0), RAS)]),
     "has 1 channel file(s), the model expects 2"),
    (lambda d: write_case(d, "x", [(volume(0)[..., 0], RAS), (volume(1)[..., 0], RAS)]),
     "expected a 3D volume"),
    (lambda d: write_case(d, "x", [(np.stack([volume(0)] * 2, -1), RAS), (volume(1), RAS)]),
     "expected a 3D volume"),
    (lambda d: write_case(d, "x", [(volume(0), RAS), (volume(1, shape=(40, 36, 7)), RAS)]),
     "differs from"),
    (lambda d: write_case(d, "x", [(volume(0), RAS), (volume(1), RAS * 1.1)]),
     "affine differs"),
])
def test_bad_inputs_are_clear_errors_and_write_nothing(run, tmp_path, capsys, make, message):
    run_dir, _, _ = run
    folder = tmp_path / "in"
    folder.mkdir()
    write_case(folder, "a_good", [(volume(5), RAS), (volume(6), RAS)])  # sorted first
    make(folder)
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(folder), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iac: error:") and message in err and str(folder / "x_000") in err
    assert not out.exists() or not any(out.iterdir())


def test_unreadable_file_and_missing_model(run, tmp_path, capsys):
    run_dir, _, _ = run
    bad = tmp_path / "bad_0000.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    assert main(["predict", str(run_dir), str(bad), str(bad), str(tmp_path / "o")]) == 2
    assert "bad_0000.nii.gz: unreadable" in capsys.readouterr().err
    assert main(["predict", str(run_dir), "--stage", "1", str(bad), str(tmp_path / "o")]) == 2
    assert "stage1/best_model.keras" in capsys.readouterr().err


def test_models_json_is_used_and_names_the_missing_model(run, tmp_path, capsys):
    run_dir, ds, _ = run
    register_model(run_dir, "iac", run_dir / "stage3" / "best_model.keras")
    case = [str(ds / "imagesTr" / f"case_b_{c:04d}.nii.gz") for c in range(2)]
    assert main(["predict", str(run_dir), "--method", "attention"] + case + [str(tmp_path)]) == 2
    assert "no model 'attention' (it would be " in (err := capsys.readouterr().err)
    assert str(pathlib.Path("compare") / "attention" / "best_model.keras") in err
    assert main(["predict", str(run_dir)] + case + [str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "case_b.nii.gz").is_file()


def test_volumetric_scores_of_the_evaluation_split(run):
    run_dir, _, model = run
    cfg = load_experiment(run_dir / "config.yaml")
    prepared = types.SimpleNamespace(splits={"cases": {"val_dt": ["case_b", "case_d"]}})
    with RunLayout.of(cfg).lock():  # only the holder of a run's lock writes into it
        summary = volumetric_scores(cfg, prepared, {"unet": model, "iac": model})
    assert set(summary) == {"unet", "iac"} and set(summary["unet"]) == {"organ", "lesion"}
    assert summary["unet"] == summary["iac"]
    rows = (run_dir / "evaluation" / "volumetric_per_case.csv").read_text().splitlines()
    assert rows[0] == "split,metric,case,class,unet_dice,unet_hd95_mm,iac_dice,iac_hd95_mm"
    assert len(rows) == 1 + 2 * 2
    saved = json.loads((run_dir / "evaluation" / "volumetric_summary.json").read_text())
    organ = saved["models"]["unet"]["classes"]["organ"]
    assert organ["n"] + organ["n_empty"] == 2
