"""``INPUT`` of ``iac predict`` (:mod:`iac_tf.inference.inputs`): a folder in nnU-Net imagesTs
layout or the channel files of one case, as cases; header checks and a whole read of every file
before anything is predicted, each error naming the file."""

import numpy as np
import pytest

import iac_tf.inference.inputs as inputs
from iac_tf.errors import DataError
from iac_tf.inference.inputs import InputCase, check_case_data, check_cases, collect_cases
from tests.data.fixtures import RAS, save, volume

SHAPE = (6, 5, 4)


def _vol(path, seed=0, shape=SHAPE, affine=RAS):
    return save(volume(seed, shape), path, affine)


def test_a_folder_is_grouped_into_cases_by_channel(tmp_path):
    for case in ("b", "a"):
        for c in (1, 0):
            _vol(tmp_path / f"{case}_{c:04d}.nii.gz")
    (tmp_path / "notes.txt").write_text("ignored: not a NIfTI name")
    cases = collect_cases([tmp_path])
    assert [c.case_id for c in cases] == ["a", "b"]
    assert [p.name for p in cases[0].paths] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    one = collect_cases([tmp_path / "a_0000.nii.gz", tmp_path / "a_0001.nii.gz"])
    assert one == [InputCase("a", (tmp_path / "a_0000.nii.gz", tmp_path / "a_0001.nii.gz"))]


@pytest.mark.parametrize("make, message", [
    (lambda d: [], "no input given"),
    (lambda d: [d / "missing.nii.gz"], "missing.nii.gz: file not found"),
    (lambda d: [_vol(d / "a_0000.nii.gz"), d], "a folder must be the only INPUT"),
    (lambda d: [(d / "scan.nrrd").write_text("x") and d / "scan.nrrd"], "scan.nrrd: not a NIfTI"),
    (lambda d: [d / "empty"], "no NIfTI files"),
    (lambda d: [_vol(d / "f" / "scan.nii.gz").parent], "scan.nii.gz: not named CASE_XXXX"),
    (lambda d: [_vol(d / "f" / "c_0001.nii.gz").parent], "c_0000.nii.gz: missing channel 0 of case c"),
])
def test_bad_inputs_are_named(tmp_path, make, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        collect_cases(make(tmp_path))


def test_header_checks(tmp_path, monkeypatch):
    a0, a1 = _vol(tmp_path / "a_0000.nii.gz"), _vol(tmp_path / "a_0001.nii.gz", 1)
    check_cases([InputCase("a", (a0, a1))], channels=2)
    with pytest.raises(DataError, match="case a has 2 channel file.*expects 1"):
        check_cases([InputCase("a", (a0, a1))], channels=1)
    moved = RAS.copy()
    moved[0, 3] = 5.0
    b1 = _vol(tmp_path / "b_0001.nii.gz", affine=moved)
    with pytest.raises(DataError, match="b_0001.nii.gz: affine differs from .*a_0000.nii.gz"):
        check_cases([InputCase("b", (a0, b1))], channels=2)
    c1 = _vol(tmp_path / "c_0001.nii.gz", shape=(6, 5, 3))
    with pytest.raises(DataError, match=r"c_0001.nii.gz: shape \(6, 5, 3\) differs"):
        check_cases([InputCase("c", (a0, c1))], channels=2)
    flat = save(np.zeros((6, 5), np.float32), tmp_path / "d_0000.nii.gz")
    with pytest.raises(DataError, match="d_0000.nii.gz: expected a 3D volume"):
        check_cases([InputCase("d", (flat,))], channels=1)
    junk = tmp_path / "e_0000.nii.gz"
    junk.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="e_0000.nii.gz: unreadable or not a NIfTI file"):
        check_cases([InputCase("e", (junk,))], channels=1)
    monkeypatch.setattr(inputs, "memory_bytes", lambda: 100)  # a header larger than the memory
    with pytest.raises(DataError, match=r"a_0000.nii.gz: the header describes 6x5x4 voxels"):
        check_cases([InputCase("a", (a0,))], channels=1)


def test_the_data_is_read_whole(tmp_path):
    good = _vol(tmp_path / "a_0000.nii.gz")
    check_case_data([InputCase("a", (good,))])
    cut = tmp_path / "b_0000.nii.gz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(DataError, match="b_0000.nii.gz: cannot read the whole volume"):
        check_case_data([InputCase("b", (cut,))])
    data = volume(0, SHAPE)
    data[1, 2, 3] = np.nan
    nan = save(data, tmp_path / "c_0000.nii.gz")
    with pytest.raises(DataError, match="c_0000.nii.gz: 1 NaN/inf voxels"):
        check_case_data([InputCase("c", (nan,))])
