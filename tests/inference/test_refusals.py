"""``iac predict`` and ``iac export`` replace only files they wrote, after every check: an
output that is an input or a file of someone else, one ``.nii.gz`` for several cases, inputs
that cannot be read whole, a bad ``--batch-size``, an export folder of other files or one that
cannot be written are refused with exit status 2, one line naming the path, nothing written.

Covers: iac_tf/inference/api.py
"""

import json
import os
import pathlib
import shutil

import nibabel as nib
import numpy as np
import pytest

from iac_tf.cli import main
from iac_tf.files import EXPORT_MARKER
from iac_tf.inference import LoadedModel, Preprocessing, predict_cases
from iac_tf.inference.predict import PREDICTION_TAG, is_prediction
from tests.data.fixtures import RAS, save, volume
from tests.inference.helpers import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run folder for the module (building and saving the U-Net is the slow part)."""
    return make_run(tmp_path_factory.mktemp("run"))


def copy_cases(ds, folder, cases=("case_a", "case_b")):
    """The two channel files of ``cases`` of the fixture dataset, copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for c in range(2):
            shutil.copy(ds / "imagesTr" / f"{case}_{c:04d}.nii.gz", folder)
    return folder


def snapshot(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_error_line(err, path):
    lines = [line for line in err.splitlines() if line.startswith("iac: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------- predict
def test_output_that_is_an_input_is_refused(run, tmp_path, capsys):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in", ["case_a"])
    before = snapshot(folder)
    a0, a1 = folder / "case_a_0000.nii.gz", folder / "case_a_0001.nii.gz"
    assert main(["predict", str(run_dir), str(a0), str(a1), str(a1)]) == 2
    assert "is one of the inputs" in one_error_line(capsys.readouterr().err, a1)
    assert snapshot(folder) == before
    os.link(a1, tmp_path / "same.nii.gz")  # another name of the same file
    assert main(["predict", str(run_dir), str(a0), str(a1), str(tmp_path / "same.nii.gz")]) == 2
    assert f"is the input {a1}" in one_error_line(capsys.readouterr().err,
                                                   tmp_path / "same.nii.gz")
    assert snapshot(folder) == before


def test_existing_file_not_written_by_the_tool_is_refused(run, tmp_path, capsys):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in", ["case_a"])
    case = [str(folder / f"case_a_{c:04d}.nii.gz") for c in range(2)]
    scan = shutil.copy(ds / "labelsTr" / "case_a.nii.gz", tmp_path / "scan.nii.gz")
    before = scan.read_bytes()
    assert main(["predict", str(run_dir)] + case + [str(scan)]) == 2
    assert "not a prediction written by this tool" in one_error_line(capsys.readouterr().err,
                                                                       scan)
    assert scan.read_bytes() == before and not is_prediction(scan)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "scan.nii.gz"]


def test_several_cases_into_one_nifti_file_is_refused(run, tmp_path, capsys):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in")
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(run_dir), str(folder), str(out)]) == 2
    assert "2 cases" in one_error_line(capsys.readouterr().err, out)
    assert not out.exists()


def test_output_folder_is_checked_whole_before_the_first_prediction(run, tmp_path, capsys):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    foreign = shutil.copy(ds / "labelsTr" / "case_b.nii.gz", out / "case_b_probabilities.nii.gz")
    args = ["predict", str(run_dir), str(folder), str(out), "--save-probabilities"]
    assert main(args) == 2
    one_error_line(capsys.readouterr().err, foreign)
    assert sorted(p.name for p in out.iterdir()) == ["case_b_probabilities.nii.gz"]
    foreign.unlink()
    assert main(args) == 0  # new files
    assert main(args) == 0  # its own earlier predictions are replaced
    for name in ("case_a", "case_b", "case_a_probabilities", "case_b_probabilities"):
        header = nib.load(str(out / f"{name}.nii.gz")).header
        assert header["descrip"].item() == PREDICTION_TAG
    assert sorted(p.name for p in out.iterdir()) == [
        ".iac-manifest", "case_a.nii.gz", "case_a_probabilities.nii.gz", "case_b.nii.gz",
        "case_b_probabilities.nii.gz"]


def test_a_prediction_corrected_by_hand_is_never_overwritten(run, tmp_path, capsys):
    """A prediction the user edited and saved with the same header is no longer what the tool
    wrote (its manifest says so): the next predict refuses it, and the other outputs too."""
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in", ["case_a"])
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(folder), str(out)]) == 0
    pred = out / "case_a.nii.gz"
    img = nib.load(str(pred))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = 2 if data[0, 0, 0] != 2 else 1  # one voxel corrected
    nib.save(type(img)(data, img.affine, img.header), str(pred))
    assert is_prediction(pred)  # the header still says it is a prediction
    before = snapshot(out)
    assert main(["predict", str(run_dir), str(folder), str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, pred)
    assert "changed since" in line and "left untouched" in line
    assert snapshot(out) == before


def test_predict_never_writes_into_a_run_folder(run, tmp_path, capsys):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in", ["case_a"])
    before = snapshot(run_dir)
    assert main(["predict", str(run_dir), str(folder), str(run_dir / "predictions")]) == 2
    assert "never written into a run" in one_error_line(capsys.readouterr().err,
                                                          run_dir / "predictions")
    assert snapshot(run_dir) == before and not (run_dir / "predictions").exists()


def nan_case(folder):
    image = volume(1)
    image[3, 4, 2] = image[5, 5, 5] = np.nan
    image[0, 0, 0] = np.inf
    save(volume(0), folder / "x_0000.nii.gz", RAS)
    return save(image, folder / "x_0001.nii.gz", RAS)


def truncated_case(folder):
    save(volume(0), folder / "x_0000.nii.gz", RAS)
    path = save(volume(1), folder / "x_0001.nii.gz", RAS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, the voxels do not
    return path


@pytest.mark.parametrize("make, message", [(nan_case, "3 NaN/inf voxels"),
                                           (truncated_case, "truncated")])
def test_input_data_is_read_whole_before_the_first_prediction(run, tmp_path, capsys, make,
                                                              message):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in", ["case_a"])  # sorted before x: predicted first
    bad = make(folder)
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(folder), str(out)]) == 2
    assert not out.exists() or not any(out.iterdir())  # case_a was not written either
    assert message in one_error_line(capsys.readouterr().err, bad)


def huge_header_case(folder):
    """A channel file whose header claims 4000^3 voxels (its data is a few bytes)."""
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), RAS)
    img.header.set_data_shape((4000, 4000, 4000))
    path = folder / "zz_0000.nii"
    path.write_bytes(img.header.binaryblock + b"\0" * (352 - 348 + 32))
    save(volume(1), folder / "zz_0001.nii.gz", RAS)
    return path


def empty_case(folder):
    """The last of three cases has no voxels (shape 0 x 4 x 4)."""
    save(np.zeros((0, 4, 4), np.float32), folder / "zz_0000.nii.gz", RAS)
    return save(np.zeros((0, 4, 4), np.float32), folder / "zz_0001.nii.gz", RAS)


@pytest.mark.parametrize("make, message", [(huge_header_case, "4000x4000x4000 voxels"),
                                           (empty_case, "has no voxels")])
def test_impossible_volumes_are_refused_before_the_first_prediction(run, tmp_path, capsys,
                                                                    make, message):
    run_dir, ds, _ = run
    folder = copy_cases(ds, tmp_path / "in")  # case_a, case_b: predicted first if not checked
    bad = make(folder)
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(folder), str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, folder / "zz_0000.nii" if "4000" in message
                          else folder / "zz_0000.nii.gz")
    assert message in line and bad.exists()
    assert not out.exists() or not any(out.iterdir())


def test_stage_and_method_together_are_refused(run, tmp_path, capsys):
    run_dir, ds, _ = run
    case = [str(ds / "imagesTr" / f"case_a_{c:04d}.nii.gz") for c in range(2)]
    out = tmp_path / "o.nii.gz"
    assert main(["predict", str(run_dir)] + case + [str(out), "--stage", "1",
                                                     "--method", "iac"]) == 2
    err = capsys.readouterr().err
    assert "--stage 1 and --method iac" in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("value", ["-5", "0"])
def test_non_positive_batch_size_is_refused(run, tmp_path, capsys, value):
    run_dir, ds, _ = run
    case = [str(ds / "imagesTr" / f"case_a_{c:04d}.nii.gz") for c in range(2)]
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(run_dir)] + case + [str(tmp_path / "o.nii.gz"), "--batch-size", value])
    assert exc.value.code == 2
    assert "--batch-size" in capsys.readouterr().err and not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("value", [-5, 0])
def test_non_positive_batch_size_in_the_python_api(tmp_path, value):
    image = save(volume(0), tmp_path / "ct_0000.nii.gz", RAS)
    model = LoadedModel(pathlib.Path("m"), lambda batch: batch, (32, 32, 1), 1)
    prep = Preprocessing(patch_size=32, zoom=1.0, reorient=True, nonzero=False, ct_window=(),
                         ct_percentiles=(0.5, 99.5), class_names=("fg",), classes=((1,),),
                         modalities=("CT",))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict_cases(model, [image], tmp_path / "out", prep, batch_size=value, progress=False)
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------- export
def fake_versions(out, versions=(1, 2)):
    """A TF Serving folder written by another tool: numbered SavedModels and preprocessing.json."""
    for v in versions:
        (out / str(v) / "variables").mkdir(parents=True)
        (out / str(v) / "saved_model.pb").write_bytes(f"model {v}".encode())
    (out / "preprocessing.json").write_text("{}")
    return out


def test_export_writes_the_next_version(run, tmp_path, capsys):
    run_dir, _, _ = run
    out = fake_versions(tmp_path / "serving")
    before = snapshot(out)
    assert main(["export", str(run_dir), str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"serves version 3: {out / '3'}" in stdout
    assert (out / "3" / "saved_model.pb").is_file() and (out / EXPORT_MARKER).is_file()
    after = snapshot(out)
    # 1, 2 and the other tool's preprocessing.json untouched; version 3 has its own recipe
    assert {k: after[k] for k in before} == before
    assert f"{out / '3' / 'assets.extra' / 'preprocessing.json'}" in stdout
    info = json.loads((out / "3" / "assets.extra" / "preprocessing.json").read_text())
    assert info["version"] == 3 and info["preprocessing"]["patch_size"] == 48
    assert not [p for p in out.iterdir() if p.name.startswith(".")
                and p.name not in (EXPORT_MARKER, ".iac-manifest")]


def test_export_refuses_a_folder_of_other_files_before_loading(run, tmp_path, capsys,
                                                               monkeypatch):
    import iac_tf.inference.api as api

    run_dir, _, _ = run
    out = fake_versions(tmp_path / "mine")
    (out / "notes.txt").write_text("my notes")
    before = snapshot(out)
    monkeypatch.setattr(api, "load_model", lambda *a: pytest.fail("model loaded"))
    assert main(["export", str(run_dir), str(out)]) == 2
    assert "not empty" in one_error_line(capsys.readouterr().err, out)
    assert snapshot(out) == before and not (out / EXPORT_MARKER).exists()


def test_export_into_an_unwritable_folder(run, capsys, unwritable):
    run_dir, _, _ = run
    assert main(["export", str(run_dir), str(unwritable)]) == 2
    assert "not writable" in one_error_line(capsys.readouterr().err, unwritable)
    assert not any(unwritable.iterdir())


def test_tensorflow_write_error_is_one_line_and_leaves_nothing(run, tmp_path, capsys,
                                                               monkeypatch):
    from iac_tf._keras import tf

    def denied(obj, path, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, f"{path}/variables; Permission denied")

    run_dir, _, _ = run
    out = tmp_path / "new" / "serving"
    monkeypatch.setattr(tf.saved_model, "save", denied)
    assert main(["export", str(run_dir), str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, out)
    assert "PermissionDeniedError" in line and "writable OUT" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_api_with_an_explicit_version(run, tmp_path):
    from iac_tf.files import RefusedPath
    from iac_tf.inference.export import export_serving

    _, _, model = run
    out = tmp_path / "serving"
    check = export_serving(model, out, ((1,), (2,)), version=5)
    assert check["version"] == 5 and check["path"] == str(out / "5")
    assert (out / "5" / "saved_model.pb").is_file()
    before = snapshot(out)
    with pytest.raises(RefusedPath, match="versions are never overwritten"):
        export_serving(model, out, ((1,), (2,)), version=5)
    assert snapshot(out) == before


def test_export_refuses_a_model_of_another_signature_or_recipe(run, tmp_path, capsys):
    """One served model, one signature and one recipe: another model is refused before it is
    exported, and each version keeps its own recipe beside it."""
    import dataclasses

    from iac_tf.files import RefusedPath
    from iac_tf.inference.api import load_run_preprocessing
    from iac_tf.inference.export import export_serving
    from tests.tiny import tiny_unet

    run_dir, _, model = run
    out = tmp_path / "serving"
    assert main(["export", str(run_dir), str(out)]) == 0
    recipe = json.loads((out / "1" / "assets.extra" / "preprocessing.json").read_text())
    assert recipe["version"] == 1 and recipe["preprocessing"]["patch_size"] == 48
    before = snapshot(out)
    with pytest.raises(RefusedPath, match=r"output channels 2 -> 1.*new OUT"):
        export_serving(tiny_unet(48, channels=2, classes=1, f=4), out, ((1,),))
    prep = load_run_preprocessing(run_dir)
    with pytest.raises(RefusedPath, match=r"preprocessing.zoom 1.0 -> 0.5"):
        export_serving(model, out, ((1,), (2,)), preprocessing=dataclasses.replace(prep, zoom=0.5))
    assert snapshot(out) == before
