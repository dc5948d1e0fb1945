"""``iac grid`` on several workers: ``--shard K/N`` partitions the settings, and ``--take-next``
workers (real concurrent processes here) never run one setting twice and leave none behind."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import yaml

from iac_tf.config import ConfigError
from iac_tf.grid import Setting, parse_shard, run_grid, shard
from iac_tf.run_layout import RunLayout
from tests.data import fixtures
from tests.tiny import write_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _items(n: int, folder: pathlib.Path, dataset: pathlib.Path) -> list[Setting]:
    cfg = yaml.safe_load(write_config(folder, dataset, folder / "cache").read_text())
    return [Setting("tiny", "base", f"s{i}", {**cfg, "name": f"s{i}"}) for i in range(n)]


def test_shards_are_disjoint_deterministic_and_cover_the_grid(tmp_path):
    items = _items(7, tmp_path, tmp_path)
    shards = [shard(items, f"{k}/3") for k in (1, 2, 3)]
    assert [s.name for s in shards[0]] == ["s0", "s3", "s6"]
    names = [s.name for part in shards for s in part]
    assert sorted(names) == sorted(s.name for s in items) and len(set(names)) == 7
    assert shard(items, "2/3") == shards[1]
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


WORKER = """
    import json, os, pathlib, sys, time
    from iac_tf.grid import Setting, run_grid
    from iac_tf.run_layout import RunLayout
    items = [Setting(**s) for s in json.loads(pathlib.Path(sys.argv[1]).read_text())]
    log = pathlib.Path(sys.argv[2])
    start = pathlib.Path(sys.argv[3])
    while not start.exists():  # both workers begin together
        time.sleep(0.01)
    def runner(s):
        with log.open("a") as fh:
            fh.write(f"{os.getpid()} {s.name}\\n")
        time.sleep(0.3)
        RunLayout(s.run_dir).claim()
        (s.run_dir / "done").write_text("")
        return 0
    run_grid(items, take_next=True, runner=runner, finished=lambda s: (s.run_dir / "done").exists(),
             log=lambda line: None)
"""


def test_take_next_workers_never_run_one_setting_twice(tmp_path):
    dataset = fixtures.write_nnunet(tmp_path / "raw")
    items = _items(6, tmp_path, dataset)
    spec = tmp_path / "items.json"
    spec.write_text(json.dumps([{"dataset": s.dataset, "backbone": s.backbone, "name": s.name,
                                 "config": s.config} for s in items]))
    log, start = tmp_path / "ran.txt", tmp_path / "start"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    workers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), str(spec), str(log),
                                 str(start)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    start.write_text("")
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read()
    ran = [line.split() for line in log.read_text().splitlines()]
    names = [name for _, name in ran]
    assert sorted(names) == [s.name for s in items]  # each setting exactly once
    assert len({pid for pid, _ in ran}) == 2  # both workers took settings


def test_a_setting_whose_worker_died_is_resumed_by_the_next(tmp_path):
    dataset = fixtures.write_nnunet(tmp_path / "raw")
    items = _items(2, tmp_path, dataset)
    code = f"""
        import time
        from iac_tf.locks import folder_lock
        with folder_lock({str(tmp_path / "runs" / ".s0.grid-claim")!r}, "grid setting s0"):
            print("ready", flush=True)
            time.sleep(120)
    """
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "ready"
    ran, lines = [], []

    def runner(s):
        ran.append(s.name)
        RunLayout(s.run_dir).claim()
        (s.run_dir / "done").write_text("")
        return 0

    def finished(s):
        return (s.run_dir / "done").exists()

    run_grid(items, runner=runner, finished=finished, log=lines.append)
    assert ran == ["s1"] and any("s0: claimed by another grid worker" in line for line in lines)
    holder.kill()
    holder.wait()
    run_grid(items, take_next=True, runner=runner, finished=finished, log=lines.append)
    assert ran == ["s1", "s0"]


def test_dry_run_of_a_shard_prints_that_shards_plan(tmp_path, capsys):
    from iac_tf.cli import main

    grid = ROOT / "experiments" / "paper" / "grid.yaml"
    common = ["grid", str(grid), "--dry-run", "--set", f"output_dir={tmp_path}", "--data-root",
              str(tmp_path)]
    seen = []
    for k in range(1, 9):
        assert main(common + ["--shard", f"{k}/8"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"shard {k}/8: 4 setting(s)"
        seen += [line.split()[0] for line in lines[2:] if "not started" in line]
    assert len(seen) == 32 and len(set(seen)) == 32  # the 8 shards cover the 32 settings once
    assert main(common + ["--shard", "9/8"]) == 2
    assert "--shard" in capsys.readouterr().err
