"""Each bad input is a DataError naming the file and the problem; nothing half-written remains.

Covers: iac_tf/config/data.py, iac_tf/data/check.py, iac_tf/data/prepare.py
"""

import gzip

import numpy as np
import pytest

from iac_tf.data import DataConfig, DataError, check_dataset, prepare_dataset
from tests.data import fixtures


def _prepare(root, tmp_path, fmt="nnunet", **kw):
    return prepare_dataset(DataConfig(format=fmt, root=str(root), patch_size=16,
                                      cache_dir=str(tmp_path / "cache"), **kw), progress=False)


def _break_nnunet(kind, ds):
    img = ds / "imagesTr" / "case_b_0000.nii.gz"
    lab = ds / "labelsTr" / "case_b.nii.gz"
    if kind == "missing image":
        img.unlink()
        return img, "missing image channel"
    if kind == "shape mismatch":
        fixtures.save(np.zeros((40, 36, 5), np.uint8), lab)
        return lab, "shape"
    if kind == "affine mismatch":
        fixtures.save(fixtures.blob_label(), lab, affine=np.diag([1.5, 1.5, 5.0, 1.0]))
        return lab, "affine differs"
    if kind == "label outside set":
        fixtures.save(fixtures.blob_label((1, 7)), lab)
        return lab, "label value(s) [7]"
    if kind == "corrupt gzip":
        img.write_bytes(gzip.compress(b"not a nifti header at all" * 20)[:60])
        return img, "corrupt or not a NIfTI"
    if kind == "not nifti":
        img.write_text("hello")
        return img, "corrupt or not a NIfTI"
    if kind == "nan":
        vol = fixtures.volume(1)
        vol[3, 3, 3] = np.nan
        fixtures.save(vol, img)
        return img, "NaN"
    raise AssertionError(kind)


KINDS = ["missing image", "shape mismatch", "affine mismatch", "label outside set",
         "corrupt gzip", "not nifti", "nan"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_raises_naming_file(kind, tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    path, problem = _break_nnunet(kind, ds)
    with pytest.raises(DataError) as info:
        _prepare(ds, tmp_path)
    assert str(path) in str(info.value) and problem in str(info.value)
    leftovers = list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else []
    assert not [p for p in leftovers if p.suffix in (".h5", ".tmp")], leftovers
    with pytest.raises(DataError, match=problem.split("(")[0].replace("[", r"\[")):
        check_dataset(ds)


@pytest.mark.parametrize("kind", ["shape mismatch", "nan", "not nifti"])
def test_on_error_skip_lists_case(kind, tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    _break_nnunet(kind, ds)
    prepared = _prepare(ds, tmp_path, on_error="skip")
    assert "case_b" not in prepared.case_ids and len(prepared.case_ids) == 4
    assert prepared.skipped[0].startswith("case_b: ")
    assert "skipped 1 case(s)" in prepared.summary()


def test_brats_missing_modality(tmp_path):
    root = fixtures.write_brats(tmp_path)
    missing = next(root.rglob("BraTS-GLI-00002-000-t2f.nii.gz"))
    missing.unlink()
    with pytest.raises(DataError, match="missing image channel 3 \\(t2f\\)") as info:
        _prepare(root, tmp_path, fmt="brats")
    assert str(missing) in str(info.value)


def test_acdc_missing_ground_truth(tmp_path):
    root = fixtures.write_acdc(tmp_path)
    gt = next(root.rglob("patient002_frame01_gt.nii.gz"))
    gt.unlink()
    with pytest.raises(DataError, match="file not found") as info:
        _prepare(root, tmp_path, fmt="acdc")
    assert str(gt) in str(info.value)


@pytest.mark.parametrize("fmt", ["nnunet", "acdc", "brats", "kits"])
def test_empty_folder(fmt, tmp_path):
    (tmp_path / "empty").mkdir()
    if fmt == "nnunet":
        (tmp_path / "empty" / "dataset.json").write_text('{"labels": {"background": 0, "x": 1}}')
    with pytest.raises(DataError, match="no labelled cases found") as info:
        _prepare(tmp_path / "empty", tmp_path, fmt=fmt)
    assert str(tmp_path / "empty") in str(info.value)


def test_missing_folder_and_bad_dataset_json(tmp_path):
    with pytest.raises(DataError, match="not found"):
        _prepare(tmp_path / "nope", tmp_path)
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a",))
    (ds / "dataset.json").write_text("{broken")
    with pytest.raises(DataError, match="dataset.json: not valid JSON"):
        _prepare(ds, tmp_path)


def test_check_dataset_cannot_guess_layout(tmp_path):
    with pytest.raises(DataError, match="cannot tell the dataset layout"):
        check_dataset(tmp_path)


def test_bad_config_values_rejected():
    from iac_tf.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="format"):
        from_dict(DataConfig, {"format": "dicom", "root": "x"})
    with pytest.raises(ConfigError, match="search_fraction"):
        from_dict(DataConfig, {"format": "nnunet", "root": "x", "search_fraction": 0.7})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(DataConfig, {"format": "nnunet", "root": "x", "patchsize": 64})


def test_float_label_maps_are_accepted_unless_fractional(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    lab = ds / "labelsTr" / "case_b.nii.gz"
    fixtures.save(fixtures.blob_label((1, 2)).astype(np.float32), lab)
    assert len(_prepare(ds, tmp_path).case_ids) == 5
    fixtures.save(fixtures.blob_label((1, 2)).astype(np.float32) * 0.5, lab)
    with pytest.raises(DataError, match="non-integer values") as info:
        _prepare(ds, tmp_path)
    assert str(lab) in str(info.value)
