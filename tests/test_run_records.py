"""Run records (:mod:`iac_tf.run_records`): each stage records the resolved config it ran with;
a rerun whose config differs in a key that decides a stage's results stops with
:class:`RunConflict` naming the key and changing nothing; ``--restart stageN`` removes that
stage, every later one and the evaluation, and only files the tool wrote.

The end-to-end reruns through the ``iac`` command are in ``tests/test_reruns.py``."""

import pathlib

import pytest
import yaml

from iac_tf.config import ConfigError, from_dict
from iac_tf.config.experiment import ExperimentConfig, load_experiment
from iac_tf.files import RefusedPath
from iac_tf.run_layout import RunLayout
from iac_tf.run_records import (RunConflict, check_stages, record_stage, restart_from,
                                restart_plan, show_value, stage_differences, stage_keys,
                                stage_sections, unit_record)
from iac_tf.version import code_version

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sample.yaml"


def _cfg(tmp_path, **overrides):
    return load_experiment(SAMPLE, {"output_dir": str(tmp_path), "name": "r",
                                    "stage1.epochs": 3, **overrides})


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_stage_records_its_resolved_config_version_and_machine(tmp_path):
    cfg = _cfg(tmp_path)
    layout = RunLayout(cfg.run_dir)
    assert stage_differences(cfg, 2) is None  # no folder: no results to compare with
    path = record_stage(cfg, 2)
    assert path == layout.stage(2) / "config.yaml"
    assert from_dict(ExperimentConfig, yaml.safe_load(path.read_text())) == cfg
    assert (layout.stage(2) / "version.txt").read_text() == code_version() + "\n"
    assert list(layout.read_machines()) == ["stage2"]
    assert stage_differences(cfg, 2) == {}  # the same config: resumed or skipped


def test_a_changed_key_is_refused_naming_it_and_nothing_changes(tmp_path):
    cfg = _cfg(tmp_path)
    record_stage(cfg, 1)
    before = _snapshot(cfg.run_dir)
    with pytest.raises(RunConflict) as err:
        check_stages(_cfg(tmp_path, **{"stage1.epochs": 7}), (1,))
    message = str(err.value)
    assert "stage1.epochs: 3 -> 7" in message and "Stage I results of another config" in message
    assert "--set name=r_2" in message and "--restart stage1 (removes stage1/)" in message
    assert _snapshot(cfg.run_dir) == before
    # a key that decides nothing (verbosity, where the cache lives) does not block
    check_stages(_cfg(tmp_path, **{"stage1.verbose": 0, "data.cache_dir": "elsewhere"}), (1,))
    # the Stage II section does not decide Stage I
    check_stages(_cfg(tmp_path, **{"stage2.epochs": 99}), (1,))
    assert _snapshot(cfg.run_dir) == before


def test_a_stage_folder_without_its_record_is_not_reused(tmp_path):
    cfg = _cfg(tmp_path)
    folder = RunLayout(cfg.run_dir).stage(3)
    folder.mkdir(parents=True)
    (folder / "history.csv").write_text("epoch\n1\n")
    with pytest.raises(RunConflict, match=r"\(no config.yaml\): unknown -> this config"):
        check_stages(cfg, (1, 2, 3))


def test_the_sections_each_stage_depends_on(tmp_path):
    cfg = _cfg(tmp_path)
    assert stage_sections(cfg, 1) == ("seed", "data", "unet", "stage1")
    assert stage_sections(cfg, 2) == ("seed", "data", "unet", "stage1", "stage2")
    assert stage_sections(cfg, 3) == ("seed", "data", "unet", "stage1", "stage2", "stage3")
    given = _cfg(tmp_path, **{"unet.pretrained": "u.keras", "stage3.genotype": "g.json"})
    assert stage_sections(given, 2) == ("seed", "data", "unet", "stage2")
    assert stage_sections(given, 3) == ("seed", "data", "unet", "stage3")
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_sections(cfg, 4)


def test_stage_keys_leave_out_what_decides_nothing():
    data = {"data": {"root": "/d", "cache_dir": "c", "patch_size": 64},
            "stage1": {"epochs": 2, "verbose": 1, "checkpoints_to_keep": 2},
            "unet": {"backbone": "vgg16", "options": {"base_filters": 4}, "pretrained": None},
            "stage2": {"epochs": 9}}
    assert stage_keys(data, ("data", "unet", "stage1")) == {
        "data.patch_size": 64, "stage1.epochs": 2, "unet.backbone": "vgg16",
        "unet.options.base_filters": 4, "unet.pretrained": None}
    data["unet"]["pretrained"] = "u.keras"  # the zoo keys only told Stage I how to build it
    assert stage_keys(data, ("unet",)) == {"unet.pretrained": "u.keras"}


def test_restart_removes_the_stage_later_ones_and_the_evaluation(tmp_path):
    cfg = _cfg(tmp_path)
    layout = RunLayout(cfg.run_dir)
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
    layout.evaluation.mkdir()
    removed, kept = restart_plan(cfg, 2)
    assert removed == [layout.stage(2), layout.stage(3), layout.evaluation] and kept == []
    assert restart_from(cfg, 2) == removed
    assert layout.stage(1).is_dir() and not any(p.exists() for p in removed)
    assert stage_differences(cfg, 1) == {}  # Stage I's record untouched
    with pytest.raises(ConfigError, match="--restart: expected stage1, stage2 or stage3"):
        restart_plan(cfg, 4)


def test_restart_deletes_nothing_when_a_file_is_not_the_tools(tmp_path):
    cfg = _cfg(tmp_path)
    layout = RunLayout(cfg.run_dir)
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
    (layout.stage(3) / "my_notes.txt").write_text("mine")
    before = _snapshot(cfg.run_dir)
    with pytest.raises(RefusedPath, match="my_notes.txt: exists and is not a result of this run"):
        restart_from(cfg, 2)
    assert _snapshot(cfg.run_dir) == before  # stage2/ was not deleted either


def test_unit_record_and_shown_values(tmp_path):
    cfg = _cfg(tmp_path, **{"stage3.verbose": 0})
    record = unit_record(cfg.stage3, (3, 1))
    assert record["depends_on_stages"] == [1, 3]
    assert record["training"]["epochs"] == cfg.stage3.epochs
    assert "verbose" not in record["training"] and "checkpoints_to_keep" not in record["training"]
    assert show_value("(not set)") == "(not set)"
    assert show_value([1, 2]) == "[1, 2]" and show_value({"a": 1}) == "{a: 1}"
    assert show_value("text") == "text" and show_value(None) == "null"
