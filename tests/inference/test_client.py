"""The export's recipe as code: :func:`iac_tf.inference.client.predict_nifti` on an exported tiny
model gives the labels ``iac predict`` writes (zoom, several windows per slice, MRI non-zero
normalisation, mirroring on and off, step sizes, a non-RAS array with its affine, a CT override);
``preprocessing.json`` carries the recipe and no training case id.

Covers: iac_tf/data/preprocessing.py
"""

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


@pytest.mark.parametrize("spacing", [None, (1.0, 1.0), (0.7, 2.5), 1.5])
def test_client_zoom_equals_the_runs_for_a_target_spacing(spacing):
    """Step 3 with ``data.spacing``: the client's per-axis factors on a non-RAS, anisotropic
    affine equal what training and ``iac predict`` compute (Preprocessing.zoom_factors)."""
    from iac_tf.inference.client import zoom_of
    from iac_tf.data.preprocessing import Preprocessing

    affine = np.array([[0.0, 0.0, -3.0, 10.0], [-0.6, 0.0, 0.0, 5.0], [0.0, 1.3, 0.0, -2.0],
                       [0.0, 0.0, 0.0, 1.0]])
    target = None if spacing is None else (tuple(spacing) if isinstance(spacing, tuple)
                                           else (spacing, spacing))
    prep = Preprocessing(patch_size=8, zoom=1.0 if spacing else 0.5, reorient=True,
                         nonzero=False, ct_window=(), ct_percentiles=(0.5, 99.5),
                         class_names=("a",), classes=((1,),), modalities=("MRI",),
                         spacing=target)
    reoriented = nib.as_closest_canonical(nib.Nifti1Image(np.zeros((4, 5, 6)), affine)).affine
    record = {"zoom": prep.zoom, "spacing": None if spacing is None else spacing,
              "reorient": True}
    assert zoom_of(record, affine) == pytest.approx(prep.zoom_factors(reoriented))
    if spacing is not None:  # RAS axis 0 is the file's axis 2 (3 mm), RAS axis 1 its axis 0
        assert zoom_of(record, affine) == pytest.approx((3.0 / target[0], 0.6 / target[1]))
