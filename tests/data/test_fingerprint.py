"""The dataset record (:mod:`iac_tf.data.fingerprint`): files by content, so a copy elsewhere is
the same dataset and a file edited to the same size is not; ``dataset.json`` compared as JSON;
:func:`differences` names the files; unchanged images keep their recorded hash; records of the
first scheme are compared the way they were made."""

import dataclasses
import hashlib
import json
import os
import shutil

import numpy as np

from iac_tf.config.data import DataConfig
from iac_tf.data.fingerprint import (data_record, dataset_json_digest, differences, fingerprint,
                                     legacy_fingerprint, same_as_legacy)
from tests.data import fixtures


def _cfg(root, tmp_path, **kw):
    return DataConfig(format=kw.pop("format", "nnunet"), root=str(root),
                      cache_dir=str(tmp_path / "cache"), **kw)


def test_the_record_lists_every_file_by_content(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a", "b"))
    record = data_record(_cfg(ds, tmp_path))
    assert record["root"] == str(ds.resolve()) and record["files"] == 4
    label = ds / "labelsTr" / "a.nii.gz"
    size, mtime, digest = record["contents"]["labelsTr/a.nii.gz"]
    assert (size, mtime) == (label.stat().st_size, label.stat().st_mtime_ns)
    assert digest == hashlib.sha256(label.read_bytes()).hexdigest()
    assert sorted(record["contents"]) == ["imagesTr/a_0000.nii.gz", "imagesTr/b_0000.nii.gz",
                                          "labelsTr/a.nii.gz", "labelsTr/b.nii.gz"]
    assert tuple(record["preprocessing"]["class_names"]) == ("organ", "lesion")
    assert fingerprint(_cfg(ds, tmp_path)) == (record["fingerprint"], 4)


def test_a_copy_is_the_same_dataset_an_edit_is_not(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a", "b"))
    first = data_record(_cfg(ds, tmp_path))
    copy = shutil.copytree(ds, tmp_path / "elsewhere" / ds.name)
    assert data_record(_cfg(copy, tmp_path))["fingerprint"] == first["fingerprint"]
    label = copy / "labelsTr" / "b.nii.gz"
    edited = bytearray(label.read_bytes())
    edited[4] ^= 0xFF  # the gzip time stamp: same size, other bytes
    label.write_bytes(bytes(edited))
    (copy / "imagesTr" / "a_0000.nii.gz").unlink()
    changed = data_record(_cfg(copy, tmp_path))
    assert differences(first, changed) == ("imagesTr/a_0000.nii.gz (missing now), "
                                           "labelsTr/b.nii.gz (content differs)")
    assert differences(first, first) == ""


def test_dataset_json_is_compared_as_json(tmp_path):
    path = tmp_path / "dataset.json"
    meta = {"labels": {"background": 0, "organ": 1}, "channel_names": {"0": "CT"}}
    path.write_text(json.dumps(meta))
    digest = dataset_json_digest(path)
    path.write_text(json.dumps(dict(reversed(list(meta.items()))), indent=4))
    assert dataset_json_digest(path) == digest  # top level reordered, re-indented
    path.write_text(json.dumps({**meta, "labels": {"organ": 1, "background": 0}}))
    assert dataset_json_digest(path) != digest  # the order of the labels orders the classes
    path.write_text("not json")
    assert dataset_json_digest(path) == hashlib.sha256(b"not json").hexdigest()


def test_unchanged_images_keep_their_recorded_hash(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a",))
    cfg = _cfg(ds, tmp_path)
    record = data_record(cfg)
    image, label = "imagesTr/a_0000.nii.gz", "labelsTr/a.nii.gz"
    record["contents"][image][2] = "kept"  # not read again: size and time are the record's
    record["contents"][label][2] = "stale"  # labels are always hashed again
    again = data_record(cfg, previous=record)
    assert again["contents"][image][2] == "kept" and again["contents"][label][2] != "stale"
    path = ds / image
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert data_record(cfg, previous=record)["contents"][image][2] != "kept"


def test_npz_and_first_scheme_records(tmp_path):
    path = tmp_path / "slices.npz"
    np.savez(path, images=np.zeros((2, 4, 4, 1), np.float32), masks=np.zeros((2, 4, 4, 1)))
    cfg = _cfg(path, tmp_path, format="npz")
    record = data_record(cfg)
    assert record["files"] == 1 and "contents" not in record
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a",))
    nifti = _cfg(ds, tmp_path)
    old = {"root": str(ds), "fingerprint": legacy_fingerprint(nifti)[0], "files": 2}
    assert same_as_legacy(old, nifti)
    assert not same_as_legacy(old, dataclasses.replace(nifti, root=str(tmp_path / "gone")))
