"""The run owns its U-Net: a user's U-Net (``unet.pretrained``) is copied into the run with its
SHA-256; readers use the copy and refuse one that changed; runs on two different U-Nets of one
dataset are two settings of the report. The first tests need no TensorFlow; the last one runs
``iac run`` / ``iac predict`` / ``iac evaluate`` on a tiny U-Net."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil

import numpy as np
import pytest
import yaml

from iac_tf.config.data import DataConfig
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.run_layout import RunLayout
from iac_tf.run_records import as_recorded, stage_keys, write_resolved
from iac_tf import run_unet as run_unet_module
from iac_tf.run_unet import (UNetChanged, checked_model, checked_source, fingerprint,
                             label, run_unet, verified)


def user_file(path: pathlib.Path, content: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def adopt(layout: RunLayout, source):
    """:func:`iac_tf.run_unet.adopt` as the pipeline calls it: holding the run's lock."""
    with layout.lock():
        layout.claim()
        return run_unet_module.adopt(layout, source)


def new_run(tmp_path) -> RunLayout:
    layout = RunLayout(tmp_path / "runs" / "r")
    layout.claim()
    return layout


def folder_sha(folder: pathlib.Path) -> str:
    """The folder fingerprint of the docs, computed independently."""
    sha = hashlib.sha256()
    for rel in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()):
        data = (folder / rel).read_bytes()
        sha.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return sha.hexdigest()


# ---------------------------------------------------------------------------- fingerprints
def test_fingerprint_of_a_file_and_of_a_folder(tmp_path):
    f = user_file(tmp_path / "u.keras", b"weights" * 1000)
    assert fingerprint(f) == hashlib.sha256(b"weights" * 1000).hexdigest()
    sm = tmp_path / "sm"
    user_file(sm / "saved_model.pb", b"graph")
    user_file(sm / "variables" / "variables.index", b"index")
    user_file(sm / "variables" / "variables.data-00000-of-00001", b"data")
    first = fingerprint(sm)
    assert first == folder_sha(sm)
    (sm / "variables" / "variables.index").rename(sm / "variables" / "other.index")
    assert fingerprint(sm) == folder_sha(sm) != first  # a renamed file is another folder


# ---------------------------------------------------------------------------- copy and record
def test_adopt_copies_the_file_and_records_its_hash(tmp_path):
    layout = new_run(tmp_path)
    source = user_file(tmp_path / "models" / "my_unet.keras", b"A" * 5000)
    record = adopt(layout, source)
    copy = layout.root / "unet" / "my_unet.keras"
    sha = hashlib.sha256(b"A" * 5000).hexdigest()
    assert record == json.loads(layout.unet_record.read_text())
    assert record["file"] == "unet/my_unet.keras" and record["sha256"] == sha
    assert record["label"] == f"custom: my_unet.keras, {sha[:8]}" == label("my_unet.keras", sha)
    assert record["source"] == str(source.resolve()) and record["bytes"] == 5000
    assert copy.read_bytes() == b"A" * 5000
    # overwritten in place (as keras' model.save does): the run's copy keeps its content
    with open(source, "r+b") as fh:
        fh.write(b"B" * 5000)
    assert copy.read_bytes() == b"A" * 5000 and verified(layout) == copy


def test_adopt_copies_a_savedmodel_folder(tmp_path):
    layout = new_run(tmp_path)
    sm = tmp_path / "exported"
    user_file(sm / "saved_model.pb", b"graph")
    user_file(sm / "variables" / "variables.index", b"index")
    record = adopt(layout, sm)
    copy = layout.root / "unet" / "exported"
    assert record["kind"] == "folder" and record["sha256"] == folder_sha(sm) == folder_sha(copy)
    assert (copy / "variables" / "variables.index").read_bytes() == b"index"


def test_adopt_again_keeps_the_copy(tmp_path):
    layout = new_run(tmp_path)
    source = user_file(tmp_path / "u.keras", b"A" * 100)
    adopt(layout, source)
    stamp = os.stat(layout.own_unet("u.keras")).st_mtime_ns
    os.utime(source)  # same content, touched
    adopt(layout, source)
    source.unlink()  # the user's file gone: nothing to copy, the record stays
    assert adopt(layout, source)["sha256"] == hashlib.sha256(b"A" * 100).hexdigest()
    assert os.stat(layout.own_unet("u.keras")).st_mtime_ns == stamp


def test_a_changed_copy_is_refused_naming_the_file_and_both_hashes(tmp_path):
    layout = new_run(tmp_path)
    source = user_file(tmp_path / "u.keras", b"A" * 100)
    record = adopt(layout, source)
    copy = layout.own_unet("u.keras")
    copy.write_bytes(b"C" * 100)
    found = hashlib.sha256(b"C" * 100).hexdigest()
    for read in (lambda: verified(layout), lambda: run_unet(layout, source),
                 lambda: checked_model(layout, copy), lambda: checked_source(layout, source)):
        with pytest.raises(UNetChanged) as err:
            read()
        assert str(copy) in str(err.value) and record["sha256"] in str(err.value)
        assert found in str(err.value) and "\n" not in str(err.value)
    copy.unlink()
    with pytest.raises(Exception, match="copy of its U-Net is missing"):
        verified(layout)


def test_resume_checks_the_named_file_against_the_record(tmp_path):
    layout = new_run(tmp_path)
    source = user_file(tmp_path / "u.keras", b"A" * 100)
    record = adopt(layout, source)
    copy = layout.own_unet("u.keras")
    assert checked_source(layout, source) == copy  # same content: the run's copy
    source.write_bytes(b"B" * 100)
    with pytest.raises(UNetChanged) as err:
        checked_source(layout, source)
    text = str(err.value)
    assert str(source) in text and record["sha256"] in text
    assert hashlib.sha256(b"B" * 100).hexdigest() in text and "--restart stage1" in text
    source.unlink()  # a run folder moved without the user's file: its copy
    assert checked_source(layout, source) == copy


def test_restart_stage1_takes_the_new_unet(tmp_path):
    layout = new_run(tmp_path)
    adopt(layout, user_file(tmp_path / "old.keras", b"A" * 100))
    new = user_file(tmp_path / "new.keras", b"B" * 100)
    assert checked_source(layout, new, restart=1) == new
    record = adopt(layout, new)
    assert record["file"] == "unet/new.keras" and verified(layout) == layout.own_unet("new.keras")
    assert not layout.own_unet("old.keras").exists()  # the former copy is removed


def test_an_older_run_uses_its_outside_unet_and_says_so_once(tmp_path, caplog):
    layout = new_run(tmp_path)
    outside = user_file(tmp_path / "u.keras", b"A" * 100)
    with layout.lock():
        layout.register_model("unet", outside)  # as runs did before they kept a copy
    with caplog.at_level(logging.WARNING, logger="iac_tf.run_unet"):
        assert run_unet(layout, str(outside)) == outside.resolve()
        assert checked_model(layout, layout.model_paths()["unet"]) == outside.resolve()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "not self-contained" in lines[0] and str(outside.resolve()) in lines[0]
    record = adopt(layout, outside)  # resumed by a stage command: the run takes its copy now
    assert run_unet(layout, str(outside)) == layout.root / record["file"]


# ---------------------------------------------------------------------------- names
def _cfg(tmp_path, pretrained=None) -> ExperimentConfig:
    data = DataConfig(format="nnunet", root=str(tmp_path / "data"))
    cfg = ExperimentConfig(data=data, name="r", output_dir=str(tmp_path / "runs"))
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, pretrained=pretrained))


def test_the_recorded_config_names_the_users_unet(tmp_path):
    source = user_file(tmp_path / "my_unet.keras", b"A" * 100)
    cfg = _cfg(tmp_path, str(source))
    record = adopt(RunLayout.of(cfg), source)
    with RunLayout.of(cfg).lock():
        write_resolved(cfg)
    written = yaml.safe_load(RunLayout.of(cfg).config.read_text())
    assert written["unet"]["backbone"] == record["label"] == as_recorded(cfg).unet.backbone
    assert record["label"].startswith("custom: my_unet.keras, ")
    # the zoo keys do not decide a stage's results when unet.pretrained is set
    sections = ("unet",)
    assert stage_keys(written, sections) == stage_keys(
        {"unet": {**written["unet"], "backbone": "base"}}, sections)
    assert "unet.backbone" in stage_keys({"unet": {"backbone": "base"}}, sections)


def _reported_run(root: pathlib.Path, name: str, unet_bytes: bytes | None, tmp_path) -> pathlib.Path:
    """A finished-looking run of the dataset ``ds`` whose U-Net is a user's file."""
    source = user_file(tmp_path / f"{name}_src" / "my_unet.keras", unet_bytes or b"x")
    cfg = dataclasses.replace(_cfg(tmp_path, str(source)), name=name, output_dir=str(root))
    if unet_bytes is not None:
        adopt(RunLayout.of(cfg), source)
    with RunLayout.of(cfg).lock():
        write_resolved(cfg)
    user_file(cfg.run_dir / "evaluation" / "dice_per_case.csv",
              b"case,class,unet,iac\nc1,a,0.5,0.6\n")
    return cfg.run_dir


def test_two_runs_on_two_unets_of_one_dataset_are_two_settings(tmp_path):
    from iac_tf.reporting.collect import read_run
    from iac_tf.reporting.tables import SettingRunTwice, check_one_run_per_setting

    a = read_run(_reported_run(tmp_path / "runs", "a", b"A" * 100, tmp_path))
    b = read_run(_reported_run(tmp_path / "runs", "b", b"B" * 100, tmp_path))
    assert a.dataset == b.dataset and a.backbone != b.backbone
    assert a.backbone == label("my_unet.keras", hashlib.sha256(b"A" * 100).hexdigest())
    check_one_run_per_setting([a, b])  # two settings, no refusal
    # runs made before runs kept their U-Net: named by the file, no hash
    old = read_run(_reported_run(tmp_path / "old", "c", None, tmp_path))
    assert old.backbone == "custom: my_unet.keras"
    with pytest.raises(SettingRunTwice):  # the same run twice is still refused
        check_one_run_per_setting([a, read_run(a.run_dir)])


def test_the_report_refuses_a_run_whose_unet_changed(tmp_path):
    from iac_tf.reporting.collect import read_run

    run = _reported_run(tmp_path / "runs", "a", b"A" * 100, tmp_path)
    (run / "unet" / "my_unet.keras").write_bytes(b"Z" * 100)
    with pytest.raises(UNetChanged, match="recorded .* found"):
        read_run(run)


# ---------------------------------------------------------------------------- end to end
def test_run_predict_and_evaluate_use_the_runs_own_unet(tmp_path, capsys, monkeypatch):
    """``iac run`` (a comparison-only run on the user's U-Net), then: the user overwrites their
    file, the run moves without it, its copy is tampered with."""
    from iac_tf._keras import keras
    from iac_tf.cli import main
    from tests.data.fixtures import write_nnunet
    from tests.tiny import tiny_unet, write_config
    import nibabel as nib

    monkeypatch.setattr(logging.getLogger("iac_tf"), "propagate", True)
    ds = write_nnunet(tmp_path / "raw")
    mine = tmp_path / "models" / "my_unet.keras"
    mine.parent.mkdir()
    keras.utils.set_random_seed(0)
    tiny_unet(32, f=4, classes=2).save(mine)
    original = hashlib.sha256(mine.read_bytes()).hexdigest()
    cfg = write_config(tmp_path, ds, tmp_path / "cache", unet__pretrained=str(mine),
                       method="attention", stage3__epochs=1, evaluation__unet_continued=False)
    assert main(["run", str(cfg)]) == 0
    run = tmp_path / "runs" / "t"
    record = json.loads((run / "unet_record.json").read_text())
    assert record["sha256"] == original and record["file"] == "unet/my_unet.keras"
    assert json.loads((run / "models.json").read_text())["unet"] == "unet/my_unet.keras"
    for config in (run / "config.yaml", run / "compare" / "attention" / "config.yaml"):
        assert yaml.safe_load(config.read_text())["unet"]["backbone"] == \
            f"custom: my_unet.keras, {original[:8]}"

    case = sorted((ds / "imagesTr").glob("*_0000.nii.gz"))[0]

    def predict(run_dir, out) -> tuple[int, str]:
        capsys.readouterr()
        rc = main(["predict", str(run_dir), str(case), str(out), "--stage", "1"])
        return rc, capsys.readouterr().err

    assert predict(run, tmp_path / "p0.nii.gz")[0] == 0
    before = np.asarray(nib.load(tmp_path / "p0.nii.gz").dataobj)
    keras.utils.set_random_seed(7)
    other = tiny_unet(32, f=4, classes=2)
    other.save(mine)  # the user's file now holds other weights
    assert hashlib.sha256(mine.read_bytes()).hexdigest() != original
    assert predict(run, tmp_path / "p1.nii.gz")[0] == 0
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "p1.nii.gz").dataobj), before)
    # resuming with the changed file is refused, naming both hashes; nothing changes
    capsys.readouterr()
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(mine) in err and original in err and "other content" in err
    # the run folder moved to another machine, without the user's file
    moved = tmp_path / "elsewhere" / "t"
    shutil.copytree(run, moved)
    mine.unlink()
    assert predict(moved, tmp_path / "p2.nii.gz")[0] == 0
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "p2.nii.gz").dataobj), before)
    assert main(["run", str(cfg)]) == 0  # resumes (everything done) with the run's copy
    # the run's copy changed: predict and evaluate refuse, naming the file and both hashes
    other.save(run / "unet" / "my_unet.keras")
    rc, err = predict(run, tmp_path / "p3.nii.gz")
    assert rc == 2 and str(run / "unet" / "my_unet.keras") in err and original in err
    assert not (tmp_path / "p3.nii.gz").exists()
    capsys.readouterr()
    assert main(["evaluate", str(cfg)]) == 2
    assert original in capsys.readouterr().err
