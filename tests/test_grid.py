"""``iac grid``: the paper's 32 settings, selection and merged configs, the checks before any
setting runs, finished settings skipped, and several workers: ``--shard K/N`` partitions the
settings, ``--take-next`` workers (real concurrent processes here) never run one setting twice
and leave none behind."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import yaml

from iac_tf.cli import main
from iac_tf.config import ConfigError
from iac_tf.grid import Setting, parse_shard, run_grid, shard
from iac_tf.run_layout import RunLayout
from tests.data import fixtures
from tests.reporting.test_report_safety import refused
from tests.tiny import write_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRID = ROOT / "experiments" / "paper" / "grid.yaml"


def _touch(path, text="{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


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


def test_grid_dry_run_lists_32_settings(tmp_path, capsys):
    # an existing data root: the example data configs' /path/to/... roots are refused
    assert main(["grid", str(GRID), "--dry-run", "--set", f"output_dir={tmp_path}",
                 "--data-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    settings = [line.split()[0] for line in lines[1:] if "not started" in line]
    assert len(settings) == 32 and len(set(settings)) == 32
    assert "acdc_base" in settings and "amos_convnext_base" in settings
    assert any(line.startswith("32 settings, 32 to run") for line in lines)


def test_grid_selects_one_dataset_backbone_or_cell(tmp_path, capsys):
    from iac_tf import grid

    g = grid.load_grid(GRID)
    assert len(grid.settings(g, dataset="kits")) == 8
    assert len(grid.settings(g, backbone="vgg16")) == 4
    cell = grid.settings(g, "brats", "convnext_tiny", {"data.root": "/data", "output_dir": str(tmp_path)})
    assert len(cell) == 1
    cfg = cell[0].config
    assert cfg["unet"]["backbone"] == "convnext_tiny" and cfg["data"]["format"] == "brats"
    assert cfg["data"]["root"] == "/data" and cfg["stage3"]["genotype_epochs"] == [25, 50, 100, 150, 200]
    assert cfg["stage1"]["batch_size"] == 128 and cfg["stage2"]["warmup_epochs"] == 15
    assert main(["grid", str(GRID), "--dataset", "nope", "--dry-run"]) == 2
    assert "no dataset 'nope'" in capsys.readouterr().err


FINISHED_SETS = {"stage2.epochs": 2, "stage2.warmup_epochs": 0, "stage3.genotype_epochs": [1, 2]}


def _finished_setting(tmp_path):
    """The acdc/base setting of the paper grid with a finished-looking run folder of the tool:
    the marker, the config and each stage's record of it, and every part the layout asks for."""
    from iac_tf import grid
    from tests.finished_runs import finish_parts

    (cell,) = grid.settings(grid.load_grid(GRID), "acdc", "base",
                            {"output_dir": str(tmp_path), **FINISHED_SETS})
    run = cell.run_dir
    _touch(run / ".iac-run", "a run folder\n")  # a run folder of the tool (grid writes only into those)
    _touch(run / "config.yaml", yaml.safe_dump(cell.config))
    _touch(run / "version.txt", "test\n")
    for stage in (1, 2, 3):
        _touch(run / f"stage{stage}" / "config.yaml", yaml.safe_dump(cell.config))
    finish_parts(run, cell.config)  # each part's records, as its finished training leaves them
    _touch(run / "evaluation" / "dice_per_case.csv",
           "case,class,unet,iac," + ",".join(cell.config["compare"]) + "\n")
    return cell


def test_grid_skips_a_finished_setting(tmp_path):
    from iac_tf import grid

    cell = _finished_setting(tmp_path)
    logged = []
    assert grid.run_grid([cell], log=logged.append) == []
    assert logged == ["[grid] 1/1 acdc_base: finished, skipped"]
    assert "finished" in grid.plan([cell]) and "0 to run" in grid.plan([cell])


def test_grid_refuses_values_no_finished_run_used(tmp_path, capsys, monkeypatch):
    """--set on a finished setting is not "finished, skipped": no run used those values, so the
    grid refuses, naming the keys, as `iac run` would."""
    import subprocess

    from iac_tf import grid

    cell = _finished_setting(tmp_path)
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("a setting was started"))
    (changed,) = grid.settings(grid.load_grid(GRID), "acdc", "base",
                               {"output_dir": str(tmp_path), **FINISHED_SETS, "stage3.epochs": 7})
    with pytest.raises(ConfigError, match=r"acdc_base: its run folder .* stage3\.epochs: \d+ -> 7"):
        grid.run_grid([changed], log=lambda m: None)
    sets = [a for k, v in FINISHED_SETS.items() for a in ("--set", f"{k}={v}")]
    rc = main(["grid", str(GRID), "--dataset", "acdc", "--backbone", "base", "--set",
               f"output_dir={tmp_path}", *sets, "--set", "stage3.epochs=7"])
    out, err = capsys.readouterr()
    refused(rc, err, "no setting was started")
    assert "acdc_base: its run folder" in out and "stage3.epochs" in out
    assert "finished, skipped" not in out and cell.run_dir.is_dir()


def _small_grid(tmp_path, name):
    for key in ("a", "b"):
        _touch(tmp_path / f"{key}.yaml", yaml.safe_dump(
            {"data": {"format": "nnunet", "root": str(tmp_path)}}))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": name, "datasets": {"a": "a.yaml", "b": "b.yaml"},
                                    "backbones": ["base"]}))
    return path


def test_grid_settings_that_share_a_run_folder_are_refused(tmp_path, capsys):
    path = _small_grid(tmp_path, "{backbone}")
    rc = main(["grid", str(path), "--dry-run"])
    refused(rc, capsys.readouterr().err, "a/base", "b/base", "both map to the run folder",
            "{dataset}")


@pytest.mark.parametrize("name,text", [("{seed}_{backbone}", "unknown field {seed}"),
                                       ("{dataset", "not a valid name template")])
def test_a_bad_grid_name_template_is_one_line(name, text, tmp_path, capsys):
    rc = main(["grid", str(_small_grid(tmp_path, name)), "--dry-run"])
    refused(rc, capsys.readouterr().err, str(tmp_path / "grid.yaml"), text)


def test_an_empty_shard_is_refused(tmp_path, capsys):
    rc = main(["grid", str(_small_grid(tmp_path, "{dataset}")), "--dry-run", "--shard", ""])
    refused(rc, capsys.readouterr().err, "--shard")


def _grid(capsys, tmp_path, *extra) -> tuple[int, str, str]:
    rc = main(["grid", str(GRID), "--dataset", "acdc", "--backbone", "base",
               "--set", f"output_dir={tmp_path / 'runs'}", *map(str, extra)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_grid_dry_run_refuses_the_placeholder_data_root(tmp_path, capsys):
    rc, out, err = _grid(capsys, tmp_path, "--dry-run")
    refused(rc, err, "not valid")
    assert "config check: acdc_base: data.root: /path/to/ACDC is the example placeholder" in out
    assert "--data-root" in out and "acdc.yaml" in out
    assert "every setting's config is valid" not in out


def test_grid_dry_run_refuses_a_missing_data_root(tmp_path, capsys):
    rc, out, err = _grid(capsys, tmp_path, "--dry-run", "--data-root", tmp_path / "nowhere")
    refused(rc, err, "not valid")
    assert f"acdc_base: data.root: {tmp_path / 'nowhere'} does not exist" in out


def test_grid_dry_run_accepts_an_existing_data_root(tmp_path, capsys):
    rc, out, _ = _grid(capsys, tmp_path, "--dry-run", "--data-root", tmp_path)
    assert rc == 0 and "every setting's config is valid" in out


def test_grid_starts_no_setting_with_a_missing_data_root(tmp_path, capsys, monkeypatch):
    import subprocess

    def forbidden(*a, **k):
        raise AssertionError("a setting was started")

    monkeypatch.setattr(subprocess, "call", forbidden)
    rc, out, err = _grid(capsys, tmp_path)
    refused(rc, err, "no setting was started")
    assert "acdc_base: data.root" in out
    assert not (tmp_path / "runs").exists()


def test_validate_names_the_setting_and_the_key(tmp_path):
    from iac_tf import grid
    from iac_tf.config import ConfigError

    items = grid.settings(grid.load_grid(GRID), "kits", None, {"output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"grid setting kits_base: data\.root: /path/to/.*and 7 more"):
        grid.validate(items)
    with pytest.raises(ConfigError, match="kits_base: data.root"):
        grid.run_grid(items, log=lambda m: None)
    assert not any(tmp_path.iterdir())
