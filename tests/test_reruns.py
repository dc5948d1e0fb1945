"""Run folders you can trust: each stage records its config; a rerun with another config stops
naming the keys and touches nothing; a finished stage says so; files are world-readable.

Covers: iac_tf/run_records.py
"""

import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest
import yaml

from iac_tf.cli import main
from iac_tf.config import ConfigError
from iac_tf.config.experiment import load_experiment
from iac_tf.files import atomic_write_text
from iac_tf.run_records import (RunConflict, check_stages, record_stage, restart_from,
                                restart_plan, unit_record)
from iac_tf.run_layout import RunLayout, model_paths, register_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "experiments" / "sample.yaml"


def _snapshot(folder: pathlib.Path) -> dict:
    """Every file under ``folder`` with its content hash, size, mtime and mode."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(folder))] = (digest, st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def _tiny_sets(tmp_path, **extra):
    sets = {"name": "tiny", "output_dir": str(tmp_path), "data.cache_dir": str(tmp_path / "cache"),
            "data.patch_size": 32, "unet.options": "{base_filters: 4}",
            "stage1.epochs": 1, "stage1.batch_size": 16, "stage1.verbose": 0}
    sets.update(extra)
    args = []
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args


def test_changed_config_stops_naming_keys_and_touches_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    old_umask = os.umask(0o022)
    try:
        assert main(["stage1", str(SAMPLE)] + _tiny_sets(tmp_path)) == 0
    finally:
        os.umask(old_umask)
    run = tmp_path / "tiny"
    assert (run / "stage1" / "config.yaml").is_file() and (run / "stage1" / "version.txt").is_file()
    # Every file the run wrote is readable by others (0644 / 0755 with umask 022).
    for path in [run, *run.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    before = _snapshot(tmp_path)
    capsys.readouterr()

    rc = main(["stage1", str(SAMPLE)] + _tiny_sets(tmp_path, **{"unet.options": "{base_filters: 8}"}))
    err = capsys.readouterr().err
    assert rc == 2
    assert "unet.options.base_filters: 4 -> 8" in err
    assert "--set name=" in err and "--restart stage1" in err
    assert _snapshot(tmp_path) == before  # every file untouched, config.yaml included

    # Another dataset: also stopped, also named; Stage II refuses to use the stale Stage I.
    rc = main(["stage2", str(SAMPLE)] + _tiny_sets(tmp_path, **{"data.root": "elsewhere"}))
    assert rc == 2 and "data.root" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before

    # Keys that do not change the results (verbosity, evaluation batch size) do not block: the
    # finished stage is reported and skipped.
    rc = main(["stage1", str(SAMPLE)] + _tiny_sets(tmp_path, **{"stage1.verbose": 2,
                                                                "evaluation.batch_size": 4}))
    out = capsys.readouterr().out
    assert rc == 0
    assert "Stage I: complete (best val_dt soft Dice" in out and "), skipped" in out

    # --restart stage1 clears the stage and runs it with the new config.
    rc = main(["stage1", str(SAMPLE), "--restart", "stage1"]
              + _tiny_sets(tmp_path, **{"unet.options": "{base_filters: 8}"}))
    assert rc == 0
    assert "base_filters: 8" in (run / "stage1" / "config.yaml").read_text()


def _cfg(tmp_path, **overrides):
    return load_experiment(SAMPLE, {"output_dir": str(tmp_path), "name": "r", **overrides})


def test_stage_keys_decide_per_stage(tmp_path):
    cfg = _cfg(tmp_path)
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
    # A Stage III key blocks Stage III only; a Stage II key blocks II (and III reads II).
    changed = _cfg(tmp_path, **{"stage3.epochs": 99})
    check_stages(changed, (1, 2))
    with pytest.raises(RunConflict, match="stage3.epochs: 10 -> 99"):
        check_stages(changed, (1, 2, 3))
    with pytest.raises(RunConflict, match=r"(?s)stage2.*--restart stage2"):
        check_stages(_cfg(tmp_path, **{"stage2.cell_channels": 4}), (1, 2, 3))
    # Non-blocking keys: where the cache lives, verbosity, checkpoints kept, the evaluation, the
    # TF determinism switch.
    check_stages(_cfg(tmp_path, **{"data.cache_dir": "x", "stage2.verbose": 0, "deterministic": True,
                                   "stage1.checkpoints_to_keep": 5, "evaluation.split": "val_search_dt"}),
                 (1, 2, 3))
    # Where a stage runs (one device or several) and where the data is (the dataset record
    # decides by content whether it is the run's data) do not block either.
    check_stages(_cfg(tmp_path, **{"stage2.distribute": "mirrored", "stage3.distribute": "mirrored",
                                   "data.root": "/a/copy/elsewhere"}), (1, 2, 3))
    # A pretrained U-Net makes Stage II independent of the stage1 section.
    pre = {"unet.pretrained": "u.keras"}
    record_stage(_cfg(tmp_path, **pre), 2)
    check_stages(_cfg(tmp_path, **pre, **{"stage1.epochs": 1}), (2,))


def test_stage_folder_without_record_is_not_reused(tmp_path):
    cfg = _cfg(tmp_path)
    (RunLayout.of(cfg).stage(1)).mkdir(parents=True)
    (RunLayout.of(cfg).stage(1) / "history.csv").write_text("epoch\n1\n")
    with pytest.raises(RunConflict, match="no config.yaml"):
        check_stages(cfg, (1,))


def test_restart_clears_the_stage_and_later_ones_and_their_models(tmp_path):
    cfg = _cfg(tmp_path)
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
        atomic_write_text(RunLayout.of(cfg).stage(stage) / "best_model.keras", "m")
    (cfg.run_dir / "evaluation").mkdir()
    register_model(cfg.run_dir, "unet", RunLayout.of(cfg).stage(1) / "best_model.keras")
    register_model(cfg.run_dir, "iac", RunLayout.of(cfg).stage(3) / "best_model.keras")
    gone = restart_from(cfg, 2)
    assert sorted(p.name for p in gone) == ["evaluation", "stage2", "stage3"]
    assert RunLayout.of(cfg).stage(1).is_dir() and not RunLayout.of(cfg).stage(2).exists()
    assert sorted(model_paths(cfg.run_dir)) == ["unet"]


def _compare_unit(cfg, name, depends_on, settings=None):
    folder = RunLayout.of(cfg).compare(name)
    folder.mkdir(parents=True)
    atomic_write_text(folder / "best_model.keras", "m")
    register_model(cfg.run_dir, name, folder / "best_model.keras")
    if depends_on is not None:
        record = unit_record(settings if settings is not None else cfg.stage3, depends_on)
        atomic_write_text(RunLayout.of(cfg).unit_record(folder), yaml.safe_dump(record))
    return folder


def test_restart_removes_exactly_what_depends_on_the_restarted_stage(tmp_path):
    cfg = _cfg(tmp_path)
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
    _compare_unit(cfg, "unet_continued", (1,))
    _compare_unit(cfg, "attention", (1,))
    _compare_unit(cfg, "iac_residual", (1, 2, 3))
    _compare_unit(cfg, "old_style", None)  # no record: may depend on anything
    removed, kept = restart_plan(cfg, 3)
    assert sorted(p.name for p in kept) == ["attention", "unet_continued"]
    assert sorted(p.name for p in removed) == ["iac_residual", "old_style", "stage3"]
    # a Stage III key that is not a training key (the cell) keeps them too
    assert [p.name for p in restart_plan(_cfg(tmp_path, **{"stage3.cell_channels": 4}), 3)[1]] \
        == ["attention", "unet_continued"]
    # a changed training key (Stage III's epochs) removes them: their budget changed
    removed, kept = restart_plan(_cfg(tmp_path, **{"stage3.epochs": 99}), 3)
    assert kept == [] and {"attention", "unet_continued"} <= {p.name for p in removed}
    # Stage I's U-Net is what they read: a Stage I restart removes everything
    removed, kept = restart_plan(cfg, 1)
    assert kept == [] and len(removed) == 7
    gone = restart_from(cfg, 3)
    assert RunLayout.of(cfg).compare("unet_continued").is_dir() and not RunLayout.of(cfg).stage(3).exists()
    assert sorted(model_paths(cfg.run_dir)) == ["attention", "unet_continued"]
    assert RunLayout.of(cfg).compare("unet_continued") not in gone


def test_the_conflict_message_says_what_a_restart_removes_and_keeps(tmp_path):
    cfg = _cfg(tmp_path)
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
    _compare_unit(cfg, "unet_continued", (1,))
    _compare_unit(cfg, "iac_residual", (1, 2, 3))
    with pytest.raises(RunConflict) as err:
        check_stages(_cfg(tmp_path, **{"stage3.cell_channels": 4}), (1, 2, 3))
    assert "--restart stage3 (removes stage3/, compare/iac_residual/; keeps " \
        "compare/unet_continued/)" in str(err.value)


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom iac_tf.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('TF', 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TF False")
    assert "--verbose" in proc.stdout


def test_tensorflow_start_up_is_silent_by_default():
    code = ("from iac_tf.cli import import_tensorflow_quietly, quiet_tensorflow\n"
            "quiet_tensorflow(False)\nimport_tensorflow_quietly()\n"
            "from iac_tf._keras import tf\nprint('sum', float(tf.reduce_sum(tf.ones(3))))")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "sum 3.0"
    assert proc.stderr == ""  # no oneDNN notice, no cuda/cuInit lines


def test_verbose_shows_tensorflow_messages(monkeypatch):
    from iac_tf.cli import build_parser, quiet_tensorflow

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet_tensorflow(False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    quiet_tensorflow(True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert build_parser().parse_args(["run", "x.yaml", "--verbose"]).verbose
    assert build_parser().parse_args(["--verbose", "run", "x.yaml"]).verbose
    assert not build_parser().parse_args(["run", "x.yaml"]).verbose


def test_strict_json_has_no_bare_nan(tmp_path):
    from iac_tf.evaluation.stats import compare_paired
    from iac_tf.files import atomic_write_json

    stats = compare_paired([0.5], [0.7])  # one pair: the CI and the tests are NaN
    atomic_write_json(tmp_path / "stats.json", {"overall": stats})
    text = (tmp_path / "stats.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert loaded["overall"]["t_test_p"] is None and loaded["overall"]["gain_ci95"] == [None, None]
    assert loaded["overall"]["mean_gain"] == pytest.approx(0.2)


def test_the_decision_rule_selects_epochs_so_it_blocks_stages_i_and_iii(tmp_path):
    """``evaluation.metric`` (default ``labels``; ``paper_channels``: the paper's protocol)
    defines the Dice that selects the best epoch: changing it blocks Stages I and III, not II."""
    cfg = _cfg(tmp_path)
    assert cfg.evaluation.metric == "labels"
    for stage in (1, 2, 3):
        record_stage(cfg, stage)
    paper = _cfg(tmp_path, **{"evaluation.metric": "paper_channels"})
    check_stages(paper, (2,))
    for stage in (1, 3):
        with pytest.raises(RunConflict, match="evaluation.metric: labels -> paper_channels"):
            check_stages(paper, (stage,))
    with pytest.raises(ConfigError, match="metric"):
        _cfg(tmp_path, **{"evaluation.metric": "channels"})
