"""The HDF5 slice cache (:mod:`iac_tf.data.cache`): what is written is what is read back, a
build that fails leaves nothing, a damaged or foreign cache file is refused naming it (and never
overwritten), the key changes with the config and the files, and temporaries of dead builds go.

How ``prepare_dataset`` reuses, invalidates and rebuilds the cache: ``tests/data/test_cache_pipeline.py``
and ``tests/test_faults.py``."""

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from iac_tf.data.cache import (CacheWriter, CorruptCacheError, cache_key, clean_stale_temporaries,
                               file_fingerprints, read_meta, slice_bytes)
from iac_tf.files import RefusedPath


def _case(seed, slices, p=4, channels=2, classes=3):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(slices, p, p, channels)).astype(np.float32)
    masks = (rng.random((slices, p, p, classes)) > 0.6).astype(np.uint8)
    return images, masks


def _write(path, cases=((0, 3), (1, 2))):
    with CacheWriter(path, 4, 2, 3, expected_slices=5) as writer:
        for k, (seed, n) in enumerate(cases):
            images, masks = _case(seed, n)
            writer.append(f"case{k}", f"patient{k // 2}", images, masks, np.arange(n) + 10 * k)
        writer.close("k" * 64, ["a", "b", "c"], ["bad: unreadable"], {"patch_size": 4})
    return path


def test_round_trip(tmp_path):
    path = _write(tmp_path / "cache" / "nnunet_x_123.h5")
    meta = read_meta(path)
    assert meta["key"] == "k" * 64 and meta["config"] == {"patch_size": 4}
    assert meta["case_ids"] == ["case0", "case1"] and meta["patient_ids"] == ["patient0"] * 2
    assert meta["class_names"] == ["a", "b", "c"] and meta["skipped"] == ["bad: unreadable"]
    assert meta["num_slices"] == 5 and meta["in_channels"] == 2
    np.testing.assert_array_equal(meta["case_index"], [0, 0, 0, 1, 1])
    images = np.concatenate([_case(0, 3)[0], _case(1, 2)[0]])
    masks = np.concatenate([_case(0, 3)[1], _case(1, 2)[1]])
    np.testing.assert_array_equal(meta["class_voxels"], masks.sum(axis=(1, 2)))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["images"][:], images)
        np.testing.assert_array_equal(f["masks"][:], masks)
        np.testing.assert_array_equal(f["slice_index"][:], [0, 1, 2, 10, 11])
        assert f["images"].chunks == (1, 4, 4, 2) and f["images"].compression == "lzf"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == [".iac-manifest"]


def test_a_failed_build_leaves_nothing(tmp_path):
    path = tmp_path / "c.h5"
    with pytest.raises(RuntimeError, match="reader died"):
        with CacheWriter(path, 4, 2, 3) as writer:
            writer.append("case0", "p0", *_case(0, 2), np.arange(2))
            raise RuntimeError("reader died")
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_cache_is_refused_naming_it(tmp_path):
    path = _write(tmp_path / "c.h5")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptCacheError, match=f"^{cut}: unreadable cache file"):
        read_meta(cut)
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    with pytest.raises(CorruptCacheError, match=f"^{text}: unreadable cache file"):
        read_meta(text)


def test_a_foreign_hdf5_file_is_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:  # another program's file: images, no cache attributes
        f["images"] = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(CorruptCacheError, match=f"^{other}: unreadable cache file"):
        read_meta(other)


def test_a_file_the_tool_did_not_write_is_never_overwritten(tmp_path):
    path = tmp_path / "nnunet_x_123.h5"
    shutil.copy(_write(tmp_path / "mine.h5"), path)  # a copy by hand: not the tool's file
    before = path.read_bytes()
    with pytest.raises(RefusedPath, match=f"^{path}: exists and is not a slice cache file"):
        _write(path)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_the_key_follows_the_config_and_the_files(tmp_path):
    source = tmp_path / "data" / "img.nii.gz"
    source.parent.mkdir()
    source.write_bytes(b"x" * 10)
    prints = file_fingerprints([source, source], tmp_path / "data")
    assert prints == [["img.nii.gz", 10, source.stat().st_mtime_ns]]
    key = cache_key({"patch_size": 64}, prints)
    assert len(key) == 64 and key == cache_key({"patch_size": 64}, prints)
    assert cache_key({"patch_size": 32}, prints) != key
    source.write_bytes(b"x" * 11)
    assert cache_key({"patch_size": 64}, file_fingerprints([source], tmp_path / "data")) != key


def test_temporaries_of_dead_builds_are_removed(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)  # a process that has ended
    stale = tmp_path / f".nnunet_x_1.{dead}.tmp.h5"
    old_style = tmp_path / f"nnunet_x_2.h5.{dead}.tmp"
    live = tmp_path / f".nnunet_x_3.{os.getpid()}.tmp.h5"
    other = tmp_path / "notes.tmp"
    for p in (stale, old_style, live, other):
        p.write_text("x")
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted([stale, old_style])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
    assert clean_stale_temporaries(tmp_path / "missing") == []


def test_slice_bytes_bounds_a_slice():
    assert slice_bytes(4, 2, 3) == 4 * 4 * (4 * 2 + 3) + 4 * (2 + 3) + 256
