"""The Python API behind ``iac predict`` and ``iac export`` (:mod:`iac_tf.inference.api`) over a
tiny run folder: the same labels as the command, an export that serves the model, the run's
own preprocessing, and bad input refused before the model is loaded.

Covers: iac_tf/inference/model_source.py
"""

import shutil

import nibabel as nib
import numpy as np
import pytest

import iac_tf.inference.api as api
from iac_tf.cli import main
from iac_tf.errors import DataError, UserError
from iac_tf.inference.model_source import LoadedModel
from tests.inference.helpers import PATCH, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def _case(ds, folder, case="case_c"):
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(2):
        shutil.copy(ds / "imagesTr" / f"{case}_{c:04d}.nii.gz", folder)
    return folder


def test_predict_writes_what_the_command_writes(run, tmp_path):
    run_dir, ds, _ = run
    inputs = _case(ds, tmp_path / "in")
    summary = api.predict(run_dir, [str(inputs)], str(tmp_path / "api"), tta=False,
                          progress=False)
    assert [row["case"] for row in summary] == ["case_c"]
    got = nib.load(summary[0]["path"])
    source = nib.load(str(inputs / "case_c_0000.nii.gz"))
    assert got.shape == source.shape and np.allclose(got.affine, source.affine)
    assert set(np.unique(np.asarray(got.dataobj))) <= {0, 1, 2}
    assert main(["predict", str(run_dir), str(inputs), str(tmp_path / "cli"), "--no-tta"]) == 0
    np.testing.assert_array_equal(np.asarray(got.dataobj),
                                  np.asarray(nib.load(str(tmp_path / "cli" / "case_c.nii.gz")).dataobj))


def test_the_runs_preprocessing_and_model(run):
    run_dir, _, model = run
    prep = api.load_run_preprocessing(run_dir)
    assert prep.patch_size == PATCH and prep.modalities == ("T2", "ADC")
    assert prep.classes == ((1,), (2,)) and prep.class_names == ("organ", "lesion")
    loaded, same = api.resolve(run_dir)
    assert isinstance(loaded, LoadedModel) and same == prep
    assert loaded.path == run_dir / "stage3" / "best_model.keras"
    x = np.random.default_rng(0).normal(size=(1, PATCH, PATCH, 2)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_bad_input_is_refused_before_the_model_loads(run, tmp_path, monkeypatch):
    run_dir, ds, _ = run
    monkeypatch.setattr(api, "load_model", lambda *a: pytest.fail("model loaded"))
    one = tmp_path / "case_c_0000.nii.gz"
    shutil.copy(ds / "imagesTr" / "case_c_0000.nii.gz", one)
    with pytest.raises(DataError, match="case case_c has 1 channel file.*the model expects 2"):
        api.predict(run_dir, [str(one)], str(tmp_path / "out"), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        api.predict(run_dir, [str(one)], str(tmp_path / "out"), batch_size=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_export_serves_the_model_and_an_export_is_not_exported_again(run, tmp_path):
    run_dir, _, _ = run
    check = api.export(run_dir, str(tmp_path / "serving"))
    assert check["version"] == 1 and check["max_abs_difference"] < 1e-4
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    with pytest.raises(UserError, match="already a serving SavedModel"):
        api.export(str(tmp_path / "serving" / "1"), str(tmp_path / "again"))
