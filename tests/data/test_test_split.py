"""test_dt: the dataset's imagesTs/labelsTs or data.test_fraction of the patients, held out before
the Fig. 5 splits; never in train_dt, val_dt, the search subsets or the slice cache; recorded in
splits.json; no test cases: the splits.json and cache of earlier versions.

Covers: iac_tf/data/prepare.py, iac_tf/data/check.py
"""

import json

import pytest

from iac_tf.config import ConfigError, from_dict
from iac_tf.data import SPLITS, DataConfig, DataError, prepare_dataset
from iac_tf.data.cache import read_meta
from iac_tf.data.check import check_dataset
from iac_tf.data.splits import hold_out_patients
from tests.data import fixtures

CASES = tuple(f"c{i}" for i in range(10))

#: splits.json of the 10-case nnU-Net fixture with seed 0, as earlier versions wrote it.
SPLITS_SEED0 = {
    "version": 1, "seed": 0, "val_fraction": 0.2, "search_fraction": 0.5,
    "patients": {"train_dt": ["c0", "c1", "c2", "c3", "c5", "c7", "c8", "c9"],
                 "val_dt": ["c4", "c6"], "train_search_dt": ["c2", "c3", "c5", "c7"],
                 "val_search_dt": ["c0", "c1", "c8", "c9"]},
    "cases": {"train_dt": ["c0", "c1", "c2", "c3", "c5", "c7", "c8", "c9"],
              "val_dt": ["c4", "c6"], "train_search_dt": ["c2", "c3", "c5", "c7"],
              "val_search_dt": ["c0", "c1", "c8", "c9"]}}


def _cfg(root, tmp_path, **kw):
    return DataConfig(format=kw.pop("format", "nnunet"), root=str(root), patch_size=16,
                      cache_dir=str(tmp_path / "cache"), **kw)


def _in_four_splits(prepared) -> set[str]:
    return {c for s in SPLITS for c in prepared.splits["cases"][s]}


def test_imagests_labelsts_become_test_dt_outside_every_split_and_the_cache(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=CASES)
    before = prepare_dataset(_cfg(ds, tmp_path), progress=False)
    stamp = before.cache_path.stat().st_mtime_ns
    assert before.test_cases == []
    # the dataset gains labelled test cases (nnU-Net raw layout)
    for k, case in enumerate(("t0", "t1", "t2")):
        fixtures.save(fixtures.volume(100 + k), ds / "imagesTs" / f"{case}_0000.nii.gz")
        fixtures.save(fixtures.blob_label((1, 2)), ds / "labelsTs" / f"{case}.nii.gz")
    fixtures.save(fixtures.volume(9), ds / "imagesTs" / "unlabelled_0000.nii.gz")
    prepared = prepare_dataset(_cfg(ds, tmp_path), progress=False)
    assert prepared.test_cases == ["t0", "t1", "t2"]
    assert not set(prepared.test_cases) & _in_four_splits(prepared)
    # the cache holds the training cases only: the same file, not rebuilt
    assert prepared.cache_path == before.cache_path
    assert prepared.cache_path.stat().st_mtime_ns == stamp
    assert not set(read_meta(prepared.cache_path)["case_ids"]) & set(prepared.test_cases)
    with pytest.raises(DataError, match="not in the slice cache"):
        prepared.arrays("test_dt")
    # the four splits are those without test cases; splits.json records test_dt
    assert {s: prepared.splits["cases"][s] for s in SPLITS} == before.splits["cases"]
    saved = json.loads(prepared.splits_path.read_text())
    assert saved["cases"]["test_dt"] == saved["patients"]["test_dt"] == ["t0", "t1", "t2"]
    assert saved["test_source"] == "labelsTs"
    assert "test_dt" in prepared.summary() and "not cached" in prepared.summary()
    # iac data check reads them too, marked
    report = check_dataset(ds, "nnunet")
    assert sum("[test_dt]" in r for r in report.rows) == 3
    # test_fraction is ignored (with a warning) when the dataset has its own test cases
    ignored = prepare_dataset(_cfg(ds, tmp_path, test_fraction=0.3), progress=False)
    assert ignored.test_cases == prepared.test_cases
    assert any("test_fraction 0.3 is ignored" in w for w in ignored.warnings)


def test_a_test_case_named_like_a_training_case_is_refused(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=CASES, test_cases=("c3",))
    with pytest.raises(DataError, match=r"labelsTs: test case\(s\) \['c3'\] also have a training"):
        prepare_dataset(_cfg(ds, tmp_path), progress=False)


def test_a_missing_test_image_is_found_before_training(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=CASES, test_cases=("t0", "t1"))
    (ds / "imagesTs" / "t1_0000.nii.gz").unlink()
    with pytest.raises(DataError, match="t1_0000.nii.gz: file of test_dt case t1 not found"):
        prepare_dataset(_cfg(ds, tmp_path), progress=False)
    skipped = prepare_dataset(_cfg(ds, tmp_path, on_error="skip"), progress=False)
    assert skipped.test_cases == ["t0"]


def test_test_fraction_holds_out_whole_patients_deterministically(tmp_path):
    root = fixtures.write_acdc(tmp_path / "acdc", patients=range(1, 11))  # 2 frames a patient
    cfg = _cfg(root, tmp_path, format="acdc", test_fraction=0.2, seed=3)
    prepared = prepare_dataset(cfg, progress=False)
    patient_of = dict(zip(prepared.case_ids, prepared.patient_ids))
    test = prepared.splits["patients"]["test_dt"]
    assert len(test) == 2 and len(prepared.test_cases) == 4
    assert prepared.test_cases == sorted(f"{p}_{ph}" for p in test for ph in ("ED", "ES"))
    # no test case or patient in the four splits, none in the slice cache
    assert not set(prepared.test_cases) & _in_four_splits(prepared)
    assert not set(test) & set(patient_of.values())
    assert not set(read_meta(prepared.cache_path)["case_ids"]) & set(prepared.test_cases)
    assert set(prepared.splits["patients"]["train_dt"]) | set(
        prepared.splits["patients"]["val_dt"]) | set(test) == {f"patient{p:03d}"
                                                                 for p in range(1, 11)}
    saved = json.loads(prepared.splits_path.read_text())
    assert saved["test_fraction"] == 0.2 and saved["test_source"] == "test_fraction"
    # the same seed gives the same test patients in a fresh cache folder, whatever val_fraction
    again = prepare_dataset(_cfg(root, tmp_path / "other", format="acdc", test_fraction=0.2,
                                 seed=3, val_fraction=0.3), progress=False)
    assert again.splits["patients"]["test_dt"] == test
    others = {tuple(hold_out_patients([f"patient{p:03d}" for p in range(1, 11)], s, 0.2))
              for s in range(6)}
    assert len(others) > 1  # the seed chooses them
    # the held-out cases are not in this cache; without the hold-out they are
    full = prepare_dataset(_cfg(root, tmp_path, format="acdc", seed=3), progress=False)
    assert full.cache_path != prepared.cache_path and full.test_cases == []
    assert set(prepared.test_cases) <= set(read_meta(full.cache_path)["case_ids"])


def test_hold_out_sizes_and_refusals():
    patients = [f"p{i}" for i in range(10)]
    assert hold_out_patients(patients, 0, 0.0) == []
    assert len(hold_out_patients(patients, 0, 0.01)) == 1
    assert len(hold_out_patients(patients, 0, 0.3)) == 3
    assert hold_out_patients(patients, 7, 0.3) == hold_out_patients(patients[::-1], 7, 0.3)
    with pytest.raises(DataError, match="data.test_fraction 0.5 holds out 2 of 4 patient"):
        hold_out_patients(patients[:4], 0, 0.5)
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        from_dict(DataConfig, {"format": "nnunet", "root": "x", "test_fraction": 1.0}, "data")
    with pytest.raises(ConfigError, match="val_fraction \\+ test_fraction"):
        from_dict(DataConfig, {"format": "nnunet", "root": "x", "test_fraction": 0.8}, "data")
    with pytest.raises(ConfigError, match="npz"):
        from_dict(DataConfig, {"format": "npz", "root": "x.npz", "test_fraction": 0.2}, "data")


def test_no_test_cases_gives_the_splits_and_cache_of_earlier_versions(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=CASES)
    cfg = _cfg(ds, tmp_path, test_fraction=0.0)
    assert "test_fraction" not in cfg.content_dict()  # the cache key of earlier versions
    prepared = prepare_dataset(cfg, progress=False)
    assert json.loads(prepared.splits_path.read_text()) == SPLITS_SEED0
    assert prepared.splits_path.read_text() == json.dumps(SPLITS_SEED0, indent=1) + "\n"
    assert prepared.test_cases == []
    # a splits file written by an earlier version is reused as it is
    old = dict(SPLITS_SEED0, note="written before test_dt existed")
    prepared.splits_path.write_text(json.dumps(old, indent=1) + "\n")
    stamp = prepared.cache_path.stat().st_mtime_ns
    again = prepare_dataset(cfg, progress=False)
    assert again.splits["note"] == "written before test_dt existed"
    assert again.cache_path == prepared.cache_path
    assert again.cache_path.stat().st_mtime_ns == stamp
