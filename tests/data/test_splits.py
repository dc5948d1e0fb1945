"""Fig. 5 splits: by patient, deterministic, search subsets equal/disjoint/inside train_dt."""

import json

import pytest

from iac_tf.files import RefusedPath

from iac_tf.data import SPLITS, DataConfig, DataError, prepare_dataset
from iac_tf.data.splits import load_or_make_splits, split_patients, validate_splits
from tests.data import fixtures


@pytest.mark.parametrize("n, val, search", [(5, 1, 2), (10, 2, 4), (11, 2, 4), (100, 20, 40),
                                            (3, 1, 1)])
def test_split_sizes(n, val, search):
    patients = [f"p{i:03d}" for i in range(n)]
    s = split_patients(patients, seed=0)
    assert len(s["val_dt"]) == val and len(s["train_dt"]) == n - val
    assert len(s["train_search_dt"]) == len(s["val_search_dt"]) == search
    assert set(s["train_dt"]) | set(s["val_dt"]) == set(patients)
    assert not set(s["train_dt"]) & set(s["val_dt"])
    assert not set(s["train_search_dt"]) & set(s["val_search_dt"])
    assert set(s["train_search_dt"]) | set(s["val_search_dt"]) <= set(s["train_dt"])


def test_split_is_deterministic_and_seed_dependent():
    patients = [f"p{i}" for i in range(20)]
    assert split_patients(patients, 3) == split_patients(list(reversed(patients)), 3)
    assert split_patients(patients, 3) != split_patients(patients, 4)


def test_search_fraction_smaller_subsets():
    s = split_patients([f"p{i}" for i in range(50)], 0, 0.2, 0.25)
    assert len(s["train_search_dt"]) == len(s["val_search_dt"]) == 10


def test_too_few_patients():
    with pytest.raises(DataError, match="at least 2 patients"):
        split_patients(["only"], 0)
    with pytest.raises(DataError, match="search subsets need at least 2"):
        split_patients(["a", "b"], 0)


def test_validate_splits_detects_leak():
    bad = {"patients": {"train_dt": ["a", "b", "c"], "val_dt": ["a"], "train_search_dt": ["b"],
                        "val_search_dt": ["c"]}}
    with pytest.raises(DataError, match="train_dt and val_dt"):
        validate_splits(bad, "x")


def test_patient_never_in_two_splits_acdc_brats(tmp_path):
    for fmt in ("acdc", "brats"):
        root = fixtures.WRITERS[fmt](tmp_path / fmt)
        prepared = prepare_dataset(DataConfig(format=fmt, root=str(root), patch_size=16,
                                              cache_dir=str(tmp_path / "cache")), progress=False)
        patient_of = dict(zip(prepared.case_ids, prepared.patient_ids))
        train = {patient_of[c] for c in prepared.splits["cases"]["train_dt"]}
        val = {patient_of[c] for c in prepared.splits["cases"]["val_dt"]}
        assert train and val and not train & val
        _, _, ids_train = prepared.arrays("train_dt")
        _, _, ids_val = prepared.arrays("val_dt")
        assert not {patient_of[c] for c in ids_train} & {patient_of[c] for c in ids_val}
        # both ED/ES frames (ACDC) or both time points (BraTS) of a patient share a split
        for split in SPLITS:
            cases = set(prepared.splits["cases"][split])
            for c, p in patient_of.items():
                siblings = {d for d, q in patient_of.items() if q == p}
                assert (c in cases) == (siblings <= cases)


def test_splits_json_is_reused_and_invalidated(tmp_path):
    path = tmp_path / "splits.json"
    cases = {f"c{i}": f"p{i}" for i in range(10)}
    first = load_or_make_splits(path, cases, 0, 0.2, 0.5)
    # a later run reuses the file as written, even if hand-edited (still valid)
    written = path.read_bytes()
    edited = json.loads(written)
    edited["note"] = "kept"
    path.write_text(json.dumps(edited))
    assert load_or_make_splits(path, cases, 0, 0.2, 0.5)["note"] == "kept"
    # another seed would rewrite it: a hand-edited file is never overwritten
    with pytest.raises(RefusedPath, match="changed since"):
        load_or_make_splits(path, cases, 1, 0.2, 0.5)
    assert json.loads(path.read_text())["note"] == "kept"
    # the file as the tool wrote it: another seed or another case set rewrites it
    path.write_bytes(written)
    assert "note" not in load_or_make_splits(path, cases, 1, 0.2, 0.5)
    fewer = dict(list(cases.items())[:8])
    again = load_or_make_splits(path, fewer, 0, 0.2, 0.5)
    assert sorted(again["cases"]["train_dt"] + again["cases"]["val_dt"]) == sorted(fewer)
    assert first["patients"]["val_dt"] != [] and not list(tmp_path.glob("*.tmp"))
