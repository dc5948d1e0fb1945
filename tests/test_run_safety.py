"""What the tool never does to a user's files, through the ``iac`` CLI: one writer per run folder
(real second processes), ``--restart`` deletes only after every check, a run never mixes two
datasets, names and values that would write elsewhere are refused, and a disk without the space
a run needs stops it before any work.

Covers: iac_tf/locks.py, iac_tf/pipeline/common.py
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from iac_tf.config.experiment import load_experiment
from iac_tf.files import atomic_write_text
from iac_tf.run_records import record_stage, write_resolved
from iac_tf.run_layout import RunLayout
from tests.data import fixtures
from tests.test_faults import run
from tests.tiny import write_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    return fixtures.write_nnunet(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("cache")


def _snapshot(folder: pathlib.Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def _holder(code: str) -> subprocess.Popen:
    """A second real process running ``code``; returns once it printed ``ready``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


HOLD_RUN_LOCK = """
    import time
    from iac_tf.run_layout import RunLayout
    with RunLayout({run!r}).lock():
        print("ready", flush=True)
        time.sleep(120)
"""


def test_a_second_writer_of_one_run_stops_at_once_naming_the_holder(dataset, cache, tmp_path,
                                                                     capsys):
    config = write_config(tmp_path, dataset, cache)
    run_dir = tmp_path / "runs" / "t"
    holder = _holder(HOLD_RUN_LOCK.format(run=str(run_dir)))
    try:
        for command in (["stage1", config], ["run", config], ["evaluate", config]):
            rc, _, err = run(command, capsys)
            assert rc == 2, command
            assert f"PID {holder.pid}" in err and "in use" in err and str(run_dir) in err
            assert err.count("\n") == 1
        assert not run_dir.exists()  # the refused runs wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the next run takes the lock over and says whose it was
    rc, out, err = run(["stage1", config], capsys)
    assert rc == 0, err
    assert f"PID {holder.pid}" in err and "has ended" in err
    assert (run_dir / "stage1" / "summary.json").is_file()
    assert not RunLayout(run_dir).lock_path.exists()  # released at the end


HOLD_MARKED_RUN = """
    import time
    from iac_tf.run_layout import RunLayout
    layout = RunLayout({run!r})
    with layout.lock():
        layout.claim()
        print("ready", flush=True)
        time.sleep(120)
"""


@pytest.mark.parametrize("tamper", ["deleted", "replaced"])
def test_the_run_lock_holds_whatever_happens_to_its_lock_file(tamper, dataset, cache, tmp_path,
                                                              capsys):
    config = write_config(tmp_path, dataset, cache)
    run_dir = tmp_path / "runs" / "t"
    holder = _holder(HOLD_MARKED_RUN.format(run=str(run_dir)))
    lock = RunLayout(run_dir).lock_path
    try:
        lock.unlink()
        if tamper == "replaced":
            lock.write_text("")
        before = _snapshot(run_dir)
        for command in (["stage1", config], ["run", config, "--restart", "stage1"]):
            rc, _, err = run(command, capsys)
            assert rc == 2 and "in use by another live process" in err, (command, err)
            assert str(run_dir) in err and err.count("\n") == 1
            assert _snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_whose_lock_file_was_removed_stops_before_its_next_write(tmp_path):
    from iac_tf.files import atomic_write_text
    from iac_tf.locks import LockLost

    layout = RunLayout(tmp_path / "runs" / "r")
    with layout.lock():
        layout.claim()
        atomic_write_text(layout.root / "a.txt", "written while the lock was ours\n")
        layout.lock_path.unlink()
        with pytest.raises(LockLost, match="removed or replaced while this process"):
            atomic_write_text(layout.root / "b.txt", "x")
    assert not (layout.root / "b.txt").exists()


def test_two_cache_builds_of_one_dataset_do_not_run_at_once(dataset, tmp_path, capsys):
    cache = tmp_path / "cache"
    config = write_config(tmp_path, dataset, cache)
    code = f"""
        from iac_tf.data.prepare import cached_path
        from iac_tf.config.experiment import load_experiment
        from iac_tf.locks import folder_lock
        import time
        path = cached_path(load_experiment({str(config)!r}).data)
        with folder_lock(path.parent / ("." + path.name + ".lock"), "cache"):
            print("ready", flush=True)
            time.sleep(120)
    """
    holder = _holder(code)
    try:
        rc, _, err = run(["data", "prepare", config], capsys)
        assert rc == 2 and f"PID {holder.pid}" in err and "slice cache" in err
        assert not list(cache.glob("*.h5"))
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait()
    rc, out, _ = run(["data", "prepare", config], capsys)
    assert rc == 0 and len(list(cache.glob("*.h5"))) == 1


def _finished_looking_run(config: pathlib.Path) -> pathlib.Path:
    """Stage records of all three stages plus files in each, Stage I finished (no training
    needed)."""
    cfg = load_experiment(config)
    with RunLayout.of(cfg).lock():  # written as the tool writes a run: through its writer gate
        write_resolved(cfg)
        for stage in (1, 2, 3):
            record_stage(cfg, stage)
            atomic_write_text(RunLayout.of(cfg).stage(stage) / "marker.txt", f"stage {stage}")
        atomic_write_text(RunLayout.of(cfg).stage(1) / "history.csv", "epoch,val_soft_dice\n1,0.5\n")
        atomic_write_text(RunLayout.of(cfg).stage(1) / "summary.json", json.dumps(
            {"best_epoch": 1, "best_val_soft_dice": 0.5}))
        atomic_write_text(cfg.run_dir / "evaluation" / "dice_table.md", "table")
    return cfg.run_dir


@pytest.mark.parametrize("problem", ["config", "unet"])
def test_restart_deletes_nothing_when_a_check_fails(problem, dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    run_dir = _finished_looking_run(config)
    (run_dir / "stage1" / "best_model.keras").write_text("not a model")
    before = _snapshot(run_dir)
    sets = ["--set", "data.patch_size=48"] if problem == "config" else []
    rc, _, err = run(["run", config, "--restart", "stage2", *sets], capsys)
    assert rc == 2
    assert ("data.patch_size" in err) if problem == "config" else ("best_model.keras" in err)
    assert _snapshot(run_dir) == before


def test_a_cut_off_record_is_one_line_before_any_work(dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    run_dir = _finished_looking_run(config)
    cfg = load_experiment(config)
    with RunLayout.of(cfg).lock():
        atomic_write_text(run_dir / "stage3" / "summary.json", '{"best_val_soft')
    before = _snapshot(run_dir)
    for command in (["run", config], ["stage3", config]):
        rc, _, err = run(command, capsys)
        assert rc == 2 and err.count("\n") == 1, (command, err)
        assert f"{run_dir / 'stage3' / 'summary.json'}: cut off or not JSON" in err
        assert _snapshot(run_dir) == before


def test_a_moved_run_is_named_where_it_is_now(dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    old = _finished_looking_run(config)
    moved = tmp_path / "elsewhere" / "t"
    moved.parent.mkdir()
    old.rename(moved)
    rc, _, err = run(["evaluate", moved / "config.yaml"], capsys)
    assert rc == 2 and str(moved / "models.json") in err and str(old) not in err, err


def test_a_stage_command_refuses_to_restart_what_it_reads(dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    run_dir = _finished_looking_run(config)
    before = _snapshot(run_dir)
    rc, _, err = run(["stage3", config, "--restart", "stage2"], capsys)
    assert rc == 2 and "iac run CONFIG --restart stage2" in err
    assert _snapshot(run_dir) == before


def test_a_relative_data_root_rerun_elsewhere_is_refused(tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "here", tmp_path / "there"
    fixtures.write_nnunet(first / "data")
    fixtures.write_nnunet(second / "data", cases=("case_a", "case_b", "case_c", "case_x",
                                                  "case_y", "case_z"))
    config = write_config(tmp_path, pathlib.Path("data") / "Dataset999_Tiny", tmp_path / "cache")
    monkeypatch.chdir(first)
    rc, _, err = run(["stage1", config], capsys)
    assert rc == 0, err
    run_dir = tmp_path / "runs" / "t"
    record = json.loads((run_dir / "data_record.json").read_text())
    assert record["root"] == str((first / "data" / "Dataset999_Tiny").resolve())
    before = _snapshot(run_dir)
    monkeypatch.chdir(second)
    for command in (["stage1", config], ["evaluate", config]):
        rc, _, err = run(command, capsys)
        assert rc == 2, command
        assert str(first / "data" / "Dataset999_Tiny") in err
        assert str(second / "data" / "Dataset999_Tiny") in err
        assert _snapshot(run_dir) == before
    # the same files under another path are the same dataset
    shutil.rmtree(second / "data")
    shutil.copytree(first / "data", second / "data")
    rc, out, err = run(["stage1", config], capsys)
    assert rc == 0 and "complete" in out, err


def test_the_dataset_record_sees_every_byte_that_matters(tmp_path, capsys):
    """A label file edited in place to the same size is another dataset (the file named); a
    reordered dataset.json and a byte-identical copy at another path are the same one."""
    import dataclasses

    from iac_tf.files import atomic_write_json
    from iac_tf.pipeline.common import checked_data

    dataset = fixtures.write_nnunet(tmp_path / "raw")
    config = write_config(tmp_path, dataset, tmp_path / "cache")
    run_dir = _finished_looking_run(config)
    cfg = load_experiment(config)
    with RunLayout.of(cfg).lock():
        atomic_write_json(RunLayout.of(cfg).data_record, checked_data(cfg).record)
    label = dataset / "labelsTr" / "case_b.nii.gz"
    original = label.read_bytes()
    edited = bytearray(original)
    edited[4] ^= 0xFF  # the gzip header's time stamp: same size, other bytes
    label.write_bytes(bytes(edited))
    before = _snapshot(run_dir)
    for command in (["stage1", config], ["run", config], ["evaluate", config]):
        rc, _, err = run(command, capsys)
        assert rc == 2 and "labelsTr/case_b.nii.gz (content differs)" in err, (command, err)
        assert "changed since" in err and err.count("\n") == 1
        assert _snapshot(run_dir) == before
    assert not (tmp_path / "cache").exists()  # refused before the slice cache was built
    label.write_bytes(original)
    meta = dataset / "dataset.json"
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps(dict(reversed(list(data.items()))), indent=4))  # reordered
    assert checked_data(cfg).write is False  # the same dataset: nothing to record again
    copy = shutil.copytree(dataset, tmp_path / "elsewhere" / dataset.name)
    moved = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(copy)))
    assert checked_data(moved).write is False
    # another dataset (one more class) at another path: both datasets named, before any cache
    other = shutil.copytree(dataset, tmp_path / "other" / dataset.name)
    labels = json.loads((other / "dataset.json").read_text())
    labels["labels"]["third"] = 3
    (other / "dataset.json").write_text(json.dumps(labels))
    rc, _, err = run(["stage1", config, "--set", f"data.root={other}"], capsys)
    assert rc == 2 and str(dataset) in err and str(other) in err, err
    assert "dataset.json (content differs)" in err and ".h5" not in err
    assert not (tmp_path / "cache").exists()


def test_a_released_lock_of_another_host_is_not_called_ended(tmp_path, caplog):
    from iac_tf.locks import folder_lock

    lock = tmp_path / ".r.lock"
    lock.write_text(json.dumps({"pid": 4242, "host": "node-that-is-not-this-one",
                                "started": "2026-01-01T00:00:00", "command": "iac run x.yaml"}))
    with caplog.at_level("WARNING"), folder_lock(lock, "run folder r"):
        pass
    text = caplog.text
    assert "PID 4242 on node-that-is-not-this-one" in text and "has ended" not in text
    assert "cannot tell" in text


def test_predict_reads_the_classes_the_run_recorded(tmp_path):
    from iac_tf.inference.api import load_run_preprocessing

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data: {format: nnunet, root: gone/Dataset1}\n")
    prep = {"patch_size": 32, "zoom": 1.0, "reorient": True, "nonzero": False, "ct_window": [],
            "ct_percentiles": [0.5, 99.5], "class_names": ["organ", "lesion"],
            "classes": [[1, 2], [2]], "modalities": ["T2"], "case_modalities": {"a": ["T2"]}}
    (run_dir / "data_record.json").write_text(json.dumps({"preprocessing": prep}))
    got = load_run_preprocessing(run_dir)
    assert got.classes == ((1, 2), (2,)) and got.class_names == ("organ", "lesion")
    assert got.modalities_of("a") == ("T2",)
    assert load_run_preprocessing(run_dir, modality=["CT"]).modalities == ("CT",)


def test_predict_refuses_a_config_of_other_data_than_the_run(dataset, cache, tmp_path):
    from iac_tf.inference.api import load_run_preprocessing
    from iac_tf.run_layout import DatasetMismatch

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data: {format: nnunet, root: /data/Dataset1}\n")
    (run_dir / "data_record.json").write_text(json.dumps(
        {"root": "/data/Dataset1", "fingerprint": "0" * 64, "files": 10}))
    other = write_config(tmp_path, dataset, cache)
    with pytest.raises(DatasetMismatch, match=f"(?s)/data/Dataset1.*{dataset}"):
        load_run_preprocessing(run_dir, config=str(other))


@pytest.mark.parametrize("name", ["../../etc", ".", "..", "a/b", "''"])
def test_a_run_name_must_be_a_plain_folder_name(name, dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    rc, _, err = run(["stage1", config, "--set", f"name={name}"], capsys)
    assert rc == 2 and "name:" in err and "plain folder name" in err
    assert not (tmp_path / "runs").exists()


def test_a_bad_set_value_is_one_line(dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    rc, _, err = run(["run", config, "--set", "stage1.epochs=[1,"], capsys)
    assert rc == 2 and "--set stage1.epochs=[1," in err and err.count("\n") == 1


def test_a_disk_without_the_space_the_run_needs_fails_before_any_work(dataset, tmp_path, capsys,
                                                                      monkeypatch):
    import iac_tf.preflight as preflight

    cache = tmp_path / "cache"
    config = write_config(tmp_path, dataset, cache)
    monkeypatch.setattr(preflight, "free_bytes", lambda path: 10 * 1024**2)
    rc, out, _ = run(["doctor", config], capsys)
    assert rc == 2
    row = next(line for line in out.splitlines() if line.startswith("output space"))
    assert "FAIL" in row and str(tmp_path / "runs" / "t") in row
    rc, _, err = run(["stage1", config], capsys)
    assert rc == 2 and "output space" not in err and "free" in err
    assert not (tmp_path / "runs").exists() and not cache.exists()


def test_a_users_own_folder_is_never_made_a_run(dataset, cache, tmp_path, capsys):
    config = write_config(tmp_path, dataset, cache)
    mine = tmp_path / "runs" / "t"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("my own notes\n")
    before = _snapshot(mine)
    for command in (["stage1", config], ["run", config], ["compare", config]):
        rc, _, err = run(command, capsys)
        assert rc == 2 and str(mine) in err and "not a run folder" in err, command
    assert _snapshot(mine) == before


def test_a_folder_that_only_looks_like_an_old_run_is_never_written(dataset, cache, tmp_path,
                                                                    capsys):
    """config.yaml beside version.txt does not make a folder a run: without the marker it is
    refused (naming the command that adopts it), also by --restart, which deletes nothing."""
    config = write_config(tmp_path, dataset, cache)
    mine = tmp_path / "runs" / "t"
    (mine / "evaluation").mkdir(parents=True)
    (mine / "config.yaml").write_text("my own settings\n")
    (mine / "version.txt").write_text("my version 3\n")
    (mine / "evaluation" / "scores.csv").write_text("my scores\n")
    before = _snapshot(mine)
    for command in (["run", config], ["run", config, "--restart", "stage1"],
                    ["evaluate", config]):
        rc, _, err = run(command, capsys)
        assert rc == 2 and str(mine) in err and f"iac adopt {mine}" in err, (command, err)
        assert err.count("\n") == 1
        assert _snapshot(mine) == before
    assert not (tmp_path / "runs" / ".t.lock").exists()
    # adopting it makes it a run: every file it holds is listed as the tool's
    rc, out, _ = run(["adopt", mine], capsys)
    assert rc == 0 and "3 files" in out
    assert (mine / ".iac-run").is_file() and (mine / ".iac-manifest").is_file()
    assert {k: v for k, v in _snapshot(mine).items() if not k.startswith(".iac-")} == before


def test_grid_skips_a_setting_another_process_is_running(dataset, cache, tmp_path):
    import yaml

    from iac_tf.grid import Setting, run_grid

    config = yaml.safe_load(write_config(tmp_path, dataset, cache).read_text())
    run_dir = tmp_path / "runs" / "t"
    holder = _holder(HOLD_RUN_LOCK.format(run=str(run_dir)))
    try:
        lines = []
        assert run_grid([Setting("tiny", "base", "t", config)], log=lines.append) == []
        assert f"being run by PID {holder.pid}" in lines[-1]
        assert not run_dir.exists()
    finally:
        holder.kill()
        holder.wait()
