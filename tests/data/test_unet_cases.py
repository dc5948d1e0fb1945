"""The cases a given U-Net was trained on (nnU-Net's ``splits_final.json`` + fold, or a plain
list): never in val_dt, val_search_dt or test_dt; unknown ids and too few held-out patients
refused; recorded in splits.json and the run's dataset record; ``iac doctor`` warns without
them.

Covers: iac_tf/data/fingerprint.py
"""

import dataclasses
import json

import pytest

from iac_tf.cli import main
from iac_tf.data import TEST_SPLIT, DataConfig, DataError, prepare_dataset
from iac_tf.data.fingerprint import data_record
from iac_tf.data.splits import held_out_val_share, split_patients, validate_splits
from iac_tf.config.experiment import load_experiment
from iac_tf.preflight import OK, WARN, training_cases_check
from iac_tf.run_layout import DatasetMismatch, RunLayout
from tests.data import fixtures
from tests.tiny import write_config

CASES = tuple(f"c{i}" for i in range(10))
TRAINED = CASES[:7]  # fold 0 of the splits file: the U-Net saw c0..c6


def splits_final(path, folds=((TRAINED, CASES[7:]), (CASES[3:], CASES[:3]))):
    path.write_text(json.dumps([{"train": list(t), "val": list(v)} for t, v in folds]))
    return path


@pytest.fixture
def dataset(tmp_path):
    return fixtures.write_nnunet(tmp_path / "raw", cases=CASES)


def _cfg(root, tmp_path, **kw):
    return DataConfig(format="nnunet", root=str(root), patch_size=16,
                      cache_dir=str(tmp_path / "cache"), **kw)


def _held_out_splits(prepared) -> dict[str, set[str]]:
    cases = prepared.splits["cases"]
    return {k: set(cases.get(k, [])) for k in ("val_dt", "val_search_dt", TEST_SPLIT)}


@pytest.mark.parametrize("test_fraction", [0.0, 0.34])
def test_the_splits_file_keeps_the_unets_cases_out_of_val_search_and_test(dataset, tmp_path,
                                                                         test_fraction):
    plain = prepare_dataset(_cfg(dataset, tmp_path), progress=False)
    # the split without the file puts cases the U-Net saw into val_dt and val_search_dt
    assert (set(plain.splits["cases"]["val_dt"]) | set(plain.splits["cases"]["val_search_dt"])) \
        & set(TRAINED)
    cfg = _cfg(dataset, tmp_path, splits_file=str(splits_final(tmp_path / "splits_final.json")),
               fold=0, test_fraction=test_fraction)
    prepared = prepare_dataset(cfg, progress=False)
    held = _held_out_splits(prepared)
    for split, cases in held.items():
        assert not cases & set(TRAINED), (split, cases)
    assert held["val_dt"] and held["val_search_dt"]
    assert set(TRAINED) <= set(prepared.splits["cases"]["train_dt"])
    assert held["val_search_dt"] <= set(prepared.splits["cases"]["train_dt"])
    assert len(held[TEST_SPLIT]) == (1 if test_fraction else 0)
    # every held-out case is used: val_dt, val_search_dt and test_dt share c7..c9
    assert held["val_dt"] | held["val_search_dt"] | held[TEST_SPLIT] == set(CASES[7:])
    assert len(prepared.splits["cases"]["train_search_dt"]) == len(held["val_search_dt"])
    assert not set(prepared.test_cases) & set(prepared.case_ids)  # test_dt is not cached
    record = prepared.splits["unet_train"]
    assert record["fold"] == 0 and record["cases"] == list(TRAINED)
    assert "the U-Net's training cases: 7 case(s)" in prepared.summary()
    # the same splits from a plain list: in the YAML, a text file or a JSON file
    listed = tmp_path / "trained.txt"
    listed.write_text("# the U-Net's cases\n" + "\n".join(TRAINED) + "\n\n")
    as_json = tmp_path / "trained.json"
    as_json.write_text(json.dumps(list(TRAINED)))
    for given in (TRAINED, str(listed), str(as_json)):
        other = prepare_dataset(dataclasses.replace(cfg, splits_file=None, fold=None,
                                                    unet_train_cases=given), progress=False)
        assert other.splits["cases"] == prepared.splits["cases"]
    # the file of the default split is not touched; a splits.json of its own
    assert prepared.splits_path != plain.splits_path and plain.splits_path.is_file()


def test_seen_patients_keep_all_their_cases_in_train_dt(tmp_path):
    """ACDC: the U-Net saw only the ED frame of patient001; its ES frame is not held out."""
    root = fixtures.write_acdc(tmp_path / "acdc", patients=(1, 2, 3, 4, 5))
    cfg = DataConfig(format="acdc", root=str(root), patch_size=16,
                     cache_dir=str(tmp_path / "cache"),
                     unet_train_cases=("patient001_ED", "patient002_ED", "patient002_ES"))
    prepared = prepare_dataset(cfg, progress=False)
    for split, cases in _held_out_splits(prepared).items():
        assert not {c for c in cases if c.startswith(("patient001", "patient002"))}, split
    assert {"patient001_ED", "patient001_ES"} <= set(
        prepared.splits["cases"]["train_dt"])
    assert prepared.splits["unet_train"]["patients"] == ["patient001", "patient002"]


def test_held_out_patients_are_divided_in_fig5s_proportion():
    patients = [f"p{i:03d}" for i in range(100)]
    seen = patients[:80]  # nnU-Net's fold 0 of 5
    s = split_patients(patients, 0, 0.2, 0.5, seen=seen, source="f")
    assert held_out_val_share(0.2, 0.5) == pytest.approx(1 / 3)
    assert len(s["val_dt"]) == 7 and len(s["val_search_dt"]) == 13
    assert len(s["train_search_dt"]) == 13 and len(s["train_dt"]) == 93
    assert not (set(s["val_dt"]) | set(s["val_search_dt"])) & set(seen)
    assert split_patients(patients, 0, seen=seen) == split_patients(patients[::-1], 0, seen=seen)
    validate_splits({"patients": s, "unet_train": {"patients": seen, "cases": seen}}, "x")
    # a split that holds a seen patient in val_dt is refused
    leaked = dict(s, val_dt=s["val_dt"] + [seen[0]])
    with pytest.raises(DataError, match="the U-Net was trained on in val_dt"):
        validate_splits({"patients": leaked, "unet_train": {"patients": seen, "cases": []}}, "x")


def test_unknown_ids_are_refused_naming_the_file_and_the_ids(dataset, tmp_path):
    bad = splits_final(tmp_path / "splits_final.json",
                       folds=((TRAINED + ("case_999", "liver_7"), CASES[7:]),))
    with pytest.raises(DataError) as err:
        prepare_dataset(_cfg(dataset, tmp_path, splits_file=str(bad), fold=0), progress=False)
    text = str(err.value)
    assert str(bad) in text and "case_999" in text and "liver_7" in text and "2 case id(s)" in text
    listed = tmp_path / "trained.txt"
    listed.write_text("c0\nnot_a_case\n")
    with pytest.raises(DataError, match=f"{listed}.*not_a_case"):
        prepare_dataset(_cfg(dataset, tmp_path, unet_train_cases=str(listed)), progress=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.h5"))


@pytest.mark.parametrize("content, message", [
    ("{\"train\": []}", "a JSON list of folds"),
    ("[{\"val\": [\"c0\"]}]", "fold 0 has no 'train' list"),
    ("[{\"train\": [\"c0\"]}]", "data.fold 1 does not exist; the file has 1 fold"),
    ("[{\"train\": [\"c0\", 3]}]", "must be a list of case ids"),
    ("[{\"train\": [\"c0\"], \"val\": [\"c0\"]}, {\"train\": [\"c1\"]}]",
     "in both 'train' and 'val': c0"),
    ("not json", "not valid JSON"),
])
def test_a_bad_splits_file_is_named(dataset, tmp_path, content, message):
    path = tmp_path / "splits_final.json"
    path.write_text(content)
    fold = 1 if "does not exist" in message else 0
    with pytest.raises(DataError, match=message) as err:
        prepare_dataset(_cfg(dataset, tmp_path, splits_file=str(path), fold=fold),
                        progress=False)
    assert str(path) in str(err.value)


def test_too_few_held_out_patients_are_refused(dataset, tmp_path):
    cfg = _cfg(dataset, tmp_path, unet_train_cases=CASES[:9])
    with pytest.raises(DataError, match="1 patient.* need at least 2"):
        prepare_dataset(cfg, progress=False)
    cfg = _cfg(dataset, tmp_path, unet_train_cases=CASES[:8], test_fraction=0.5)
    with pytest.raises(DataError, match="test_fraction 0.5 holds out 1 of the 2 other"):
        prepare_dataset(cfg, progress=False)


def test_a_labelsts_case_the_unet_saw_is_refused(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=CASES[:6], test_cases=("t0", "t1"))
    with pytest.raises(DataError, match="test_dt case\\(s\\) of labelsTs: t1"):
        prepare_dataset(_cfg(ds, tmp_path, unet_train_cases=("c0", "t1")), progress=False)


def test_config_keys_go_together():
    with pytest.raises(ValueError, match="needs fold"):
        DataConfig(format="nnunet", root="x", splits_file="s.json")
    with pytest.raises(ValueError, match="not both"):
        DataConfig(format="nnunet", root="x", splits_file="s.json", fold=0,
                   unet_train_cases=("a",))
    with pytest.raises(ValueError, match="splits_file is not"):
        DataConfig(format="nnunet", root="x", fold=0)
    assert "splits_file" not in DataConfig(format="nnunet", root="x").content_dict()


def test_the_run_records_the_list_and_refuses_another(dataset, tmp_path):
    files = splits_final(tmp_path / "splits_final.json")
    cfg = _cfg(dataset, tmp_path, splits_file=str(files), fold=0)
    record = data_record(cfg, training_cases=True)
    assert record["unet_train_cases"]["count"] == 7 and record["unet_train_cases"]["fold"] == 0
    assert "unet_train_cases" not in data_record(_cfg(dataset, tmp_path), training_cases=True)
    assert "unet_train_cases" not in data_record(cfg)  # the files alone (predict --config)
    layout = RunLayout(tmp_path / "run")
    with layout.lock():
        layout.claim()
        layout.write_data_record(record)
    layout.check_unet_train_cases(record)  # the same list: fine
    # the same ids in another file: fine
    moved = data_record(dataclasses.replace(cfg, splits_file=None, fold=None,
                                            unet_train_cases=TRAINED), training_cases=True)
    layout.check_unet_train_cases(moved)
    for other in (dataclasses.replace(cfg, fold=1), _cfg(dataset, tmp_path)):
        with pytest.raises(DatasetMismatch, match="another val_dt, val_search_dt and test_dt"):
            layout.check_unet_train_cases(data_record(other, training_cases=True))


def test_doctor_warns_about_a_given_unet_without_its_training_cases(dataset, tmp_path, capsys):
    from iac_tf._keras import keras
    from tests.tiny import flexible_unet

    unet = tmp_path / "unet.keras"
    flexible_unet(keras).save(str(unet))
    config = write_config(tmp_path, dataset, tmp_path / "cache", unet__pretrained=str(unet))
    row = training_cases_check(load_experiment(config))
    assert row.status == WARN and "val_dt, val_search_dt and test_dt may hold" in row.detail
    assert main(["doctor", str(config)]) == 0
    out = capsys.readouterr().out
    assert "U-Net's training cases  WARN" in out and "data.splits_file" in out
    files = splits_final(tmp_path / "splits_final.json")
    given = load_experiment(write_config(tmp_path, dataset, tmp_path / "cache",
                                         unet__pretrained=str(unet),
                                         data__splits_file=str(files), data__fold=0))
    row = training_cases_check(given)
    assert row.status == OK and "7 case(s) of 7 patient(s)" in row.detail
    unknown = load_experiment(write_config(tmp_path, dataset, tmp_path / "cache",
                                           unet__pretrained=str(unet),
                                           data__unet_train_cases=["c0", "zz"]))
    row = training_cases_check(unknown)
    assert row.status == "fail" and "zz" in row.detail
    # Stage I trains the U-Net: no row
    assert training_cases_check(load_experiment(
        write_config(tmp_path, dataset, tmp_path / "cache"))) is None


def test_a_rerun_of_the_run_with_another_fold_is_refused_before_anything_is_written(dataset,
                                                                                   tmp_path):
    from iac_tf.config.experiment import ExperimentConfig
    from iac_tf.pipeline.common import checked_data, write_run_records

    files = splits_final(tmp_path / "splits_final.json")
    data = _cfg(dataset, tmp_path, splits_file=str(files), fold=0)
    cfg = dataclasses.replace(ExperimentConfig(data=data), name="run", output_dir=str(tmp_path))
    with RunLayout.of(cfg).lock():
        write_run_records(cfg, None, checked_data(cfg))
    before = RunLayout.of(cfg).data_record.read_text()
    assert checked_data(cfg).record["unet_train_cases"]["sha256"]  # the same list: accepted
    other = dataclasses.replace(cfg, data=dataclasses.replace(data, fold=1))
    with pytest.raises(DatasetMismatch, match="fold 0.*fold 1"):
        checked_data(other)
    assert RunLayout.of(cfg).data_record.read_text() == before
