"""The export's recipe as code: :func:`iac_tf.inference.client.predict_nifti` on an exported tiny
model gives the labels ``iac predict`` writes (zoom, several windows per slice, MRI non-zero
normalisation, mirroring on and off, step sizes, a non-RAS array with its affine, a CT override);
``preprocessing.json`` carries the recipe and no training case id."""

import json

import nibabel as nib
import numpy as np
import pytest

from iac_tf.cli import main
from iac_tf.inference.client import RECIPE, load_export, predict_nifti
from tests.data.fixtures import KITS_AFFINE, save, to_kits_order, volume
from tests.inference.helpers import make_run

CASES = ("case_a", "case_b", "case_c", "case_d", "case_e")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run with 32x32 windows over 40x36 slices zoomed by 1.5 (60x54: 3x3 windows at step
    0.5), MRI z-score over non-zero voxels, exported; and a new two-channel case with a zero
    background border."""
    tmp = tmp_path_factory.mktemp("client")
    run_dir, _, _ = make_run(tmp, patch=32, zoom=1.5, mri_nonzero=True)
    out = tmp / "serving"
    assert main(["export", str(run_dir), str(out)]) == 0
    paths = []
    for c in range(2):
        image = volume(100 + c)
        image[:6] = 0.0
        paths.append(save(image, tmp / "new" / f"scan_{c:04d}.nii.gz"))
    return run_dir, out, load_export(out), paths


def iac_predict(model, paths, out, *options):
    assert main(["predict", str(model)] + [str(p) for p in paths] + [str(out), *options]) == 0
    return np.asarray(nib.load(str(out)).dataobj)


def test_preprocessing_json_has_the_recipe_and_no_training_case_id(exported):
    _, out, served, _ = exported
    text = (out / "preprocessing.json").read_text()
    assert not [case for case in CASES if case in text]
    info = json.loads(text)
    assert "case_modalities" not in info["preprocessing"]
    assert info["recipe"] == RECIPE and "predict_nifti" in info["recipe"]["runnable"]
    assert served.preprocessing["patch_size"] == 32 and served.preprocessing["zoom"] == 1.5
    assert served.path == out / "1"


@pytest.mark.parametrize("options, kwargs", [
    ([], {}),
    (["--no-tta", "--step-size", "0.25"], {"tta": False, "step_size": 0.25}),
])
def test_client_equals_iac_predict(exported, tmp_path, options, kwargs):
    run_dir, out, served, paths = exported
    # the export folder alone (its preprocessing.json, no run config)
    want = iac_predict(out, paths, tmp_path / "served.nii.gz", *options)
    got = predict_nifti(paths, served, **kwargs)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(want)) > {0}  # the labels are not trivially empty
    np.testing.assert_array_equal(predict_nifti([str(p) for p in paths], out, **kwargs), want)
    keras = iac_predict(run_dir, paths, tmp_path / "keras.nii.gz", *options)
    assert (keras == want).mean() > 0.999  # Keras vs SavedModel kernels: ~1e-6 apart


def test_client_on_a_non_ras_array_and_a_ct_override(exported, tmp_path):
    _, out, served, paths = exported
    arrays = [to_kits_order(np.asarray(nib.load(str(p)).dataobj)) for p in paths]
    kits = [save(a, tmp_path / "kits" / f"k_{c:04d}.nii.gz", KITS_AFFINE)
            for c, a in enumerate(arrays)]
    want = iac_predict(out, kits, tmp_path / "kits.nii.gz")
    got = predict_nifti(np.stack(arrays, axis=-1), served, affine=KITS_AFFINE)
    assert got.shape == arrays[0].shape
    np.testing.assert_array_equal(got, want)
    want_ct = iac_predict(out, paths, tmp_path / "ct.nii.gz", "--modality", "CT")
    np.testing.assert_array_equal(predict_nifti(paths, served, modalities=["CT"]), want_ct)
    assert not np.array_equal(want_ct, iac_predict(out, paths, tmp_path / "mri.nii.gz"))
