"""HDF5 cache reuse/invalidation/atomicity, the tf.data pipeline, the npz format, the sample.

Covers: iac_tf/data/pipeline.py, iac_tf/data/prepare.py, iac_tf/config/data.py
"""

import os
import pathlib
import time

import numpy as np
import pytest

from iac_tf.data import (
    SAMPLE_DATASET,
    SPLITS,
    DataConfig,
    DataError,
    check_dataset,
    load_data_config,
    prepare_dataset,
)
from iac_tf.data import prepare as prepare_mod
from tests.data import fixtures

REPO = pathlib.Path(__file__).resolve().parents[2]


def _cfg(root, tmp_path, **kw):
    kw.setdefault("patch_size", 16)
    return DataConfig(format=kw.pop("format", "nnunet"), root=str(root),
                      cache_dir=str(tmp_path / "cache"), **kw)


@pytest.fixture
def nnunet(tmp_path):
    return fixtures.write_nnunet(tmp_path / "raw", cases=tuple(f"c{i}" for i in range(10)))


def test_cache_reused_then_invalidated_by_config_and_source(nnunet, tmp_path):
    first = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    stamp = first.cache_path.stat().st_mtime_ns
    again = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    assert again.cache_path == first.cache_path
    assert again.cache_path.stat().st_mtime_ns == stamp  # not rebuilt
    # a different seed changes only the split, not the cache
    reseeded = prepare_dataset(_cfg(nnunet, tmp_path, seed=5), progress=False)
    assert reseeded.cache_path == first.cache_path
    # a preprocessing change rebuilds
    other = prepare_dataset(_cfg(nnunet, tmp_path, empty_slice_fraction=1.0), progress=False)
    assert other.cache_path != first.cache_path and other.num_slices("train_dt") > 0
    # a changed source file rebuilds
    label = nnunet / "labelsTr" / "c3.nii.gz"
    fixtures.save(fixtures.blob_label((1,)), label)
    os.utime(label, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    assert changed.cache_path != first.cache_path


def test_killed_build_leaves_no_cache(nnunet, tmp_path, monkeypatch):
    calls = []
    real = prepare_mod.preprocess_case

    def dies_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_mod, "preprocess_case", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    cache = tmp_path / "cache"  # nothing left: no partial file, no folder made for it
    assert not cache.exists() or list(cache.iterdir()) == []
    monkeypatch.setattr(prepare_mod, "preprocess_case", real)
    assert prepare_dataset(_cfg(nnunet, tmp_path), progress=False).num_slices("train_dt") > 0


def test_arrays_and_dataset_agree(nnunet, tmp_path):
    prepared = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    images, masks, ids = prepared.arrays("val_dt")
    assert images.dtype == masks.dtype == np.float32 and len(ids) == len(images)
    assert set(ids) == set(prepared.splits["cases"]["val_dt"])
    batches = list(prepared.dataset("val_dt", batch_size=4).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), masks)
    total = sum(prepared.num_slices(s) for s in ("train_dt", "val_dt"))
    assert total == len(prepared._case_index)
    search = prepared.num_slices("train_search_dt") + prepared.num_slices("val_search_dt")
    assert search <= prepared.num_slices("train_dt")
    assert "train_search_dt" in prepared.summary() and "organ: fg%" in prepared.summary()


def test_dataset_shuffle_is_deterministic_and_reshuffles(nnunet, tmp_path):
    prepared = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)

    def epoch_order(ds):
        return np.concatenate([x[:, 0, 0, 0] for x, _ in ds.as_numpy_iterator()])

    ds = prepared.dataset("train_dt", batch_size=5, shuffle=True, seed=1)
    e1, e2 = epoch_order(ds), epoch_order(ds)
    assert not np.array_equal(e1, e2)  # reshuffled each epoch
    ds_b = prepared.dataset("train_dt", batch_size=5, shuffle=True, seed=1)
    np.testing.assert_array_equal(epoch_order(ds_b), e1)  # same sequence from the same seed
    np.testing.assert_array_equal(epoch_order(ds_b), e2)
    plain = epoch_order(prepared.dataset("train_dt", batch_size=5))
    np.testing.assert_array_equal(np.sort(e1), np.sort(plain))


def test_dataset_batching_options(nnunet, tmp_path):
    prepared = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    n = prepared.num_slices("train_dt")
    ds = prepared.dataset("train_dt", batch_size=4, drop_remainder=True)
    assert ds.element_spec[0].shape.as_list() == [4, 16, 16, 1]
    assert ds.element_spec[1].shape.as_list() == [4, 16, 16, 2]
    assert sum(1 for _ in ds) == n // 4
    rep = prepared.dataset("train_dt", batch_size=4, repeat=True)
    assert sum(1 for _ in rep.take(n)) == n  # endless
    with pytest.raises(DataError, match="unknown split"):
        prepared.num_slices("train")
    with pytest.raises(DataError, match="test_dt is not in the slice cache"):
        prepared.num_slices("test_dt")


def test_large_split_is_read_from_hdf5(nnunet, tmp_path, monkeypatch):
    from iac_tf.data import pipeline

    prepared = prepare_dataset(_cfg(nnunet, tmp_path), progress=False)
    images, _, _ = prepared.arrays("train_dt")
    monkeypatch.setattr(pipeline, "IN_MEMORY_BYTES", 0)
    ds = prepared.dataset("train_dt", batch_size=3, shuffle=True, seed=0)
    got = np.concatenate([x for x, _ in ds.as_numpy_iterator()])
    assert not prepared._memory
    np.testing.assert_array_equal(np.sort(got.ravel()), np.sort(images.ravel()))


def test_npz_format(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(12, 8, 8, 2)).astype(np.float32)
    masks = (rng.random((12, 8, 8, 3)) > 0.5).astype(np.uint8)
    case_ids = np.array([f"pat{i // 2}" for i in range(12)])
    path = tmp_path / "slices.npz"
    np.savez(path, images=images, masks=masks, case_ids=case_ids)
    prepared = prepare_dataset(_cfg(path, tmp_path, format="npz"), progress=False)
    assert prepared.in_channels == 2 and prepared.num_classes == 3 and len(prepared.case_ids) == 6
    x, y, ids = prepared.arrays("val_dt")
    for img, case in zip(x, ids):  # slices used as they are
        k = int(np.flatnonzero((images == img).all(axis=(1, 2, 3)))[0])
        assert case_ids[k] == case
    assert check_dataset(path).ok
    np.savez(tmp_path / "bad.npz", images=images, masks=masks * 2)
    with pytest.raises(DataError, match="bad.npz: 'masks' must be binary"):
        prepare_dataset(_cfg(tmp_path / "bad.npz", tmp_path, format="npz"), progress=False)


def test_bundled_sample_prepares_in_seconds(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_data_config(REPO / "experiments" / "data" / "sample.yaml")
    assert cfg.root == SAMPLE_DATASET
    cfg = DataConfig(**{**cfg.__dict__, "cache_dir": str(tmp_path / "cache")})
    start = time.perf_counter()
    prepared = prepare_dataset(cfg, progress=False)
    assert time.perf_counter() - start < 20
    assert prepared.num_classes == 1 and prepared.class_names == ["lesion"]
    assert prepared.in_channels == 1 and len(prepared.case_ids) == 5
    assert all(prepared.num_slices(s) > 0 for s in SPLITS)
    _, masks, _ = prepared.arrays("train_dt")
    assert masks.sum() > 0 and masks.shape[1:] == (128, 128, 1)
    assert check_dataset(SAMPLE_DATASET).ok
    size = sum(p.stat().st_size for p in (REPO / "data" / "sample").rglob("*") if p.is_file())
    assert size < 4 * 1024**2


@pytest.mark.parametrize("name", ["sample", "acdc", "brats", "kits", "amos", "npz"])
def test_example_yamls_load(name):
    cfg = load_data_config(REPO / "experiments" / "data" / f"{name}.yaml")
    assert cfg.format == ("nnunet" if name == "sample" else name)
