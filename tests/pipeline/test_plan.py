"""The run plan (``iac_tf.pipeline.plan``): built once from the config and the command, what
``--restart`` removes and keeps, and ``--plan``, which prints it and writes nothing; the
pipeline package's names, imported on first use.

Covers: iac_tf/pipeline/__init__.py
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from iac_tf.cli import main
from iac_tf.config import ConfigError
from iac_tf.config.experiment import load_experiment
from iac_tf.files import atomic_write_text
from iac_tf.pipeline.plan import (NO_COMPARISONS, Preflight, build_plan, format_plan,
                                  stage3_units)
from iac_tf.run_records import record_stage, unit_record, write_resolved
from iac_tf.run_layout import RunLayout

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "experiments" / "sample.yaml"


def _sets(tmp_path, **extra):
    return {"output_dir": str(tmp_path), "name": "run", **extra}


def _cfg(tmp_path, **extra):
    return load_experiment(SAMPLE, _sets(tmp_path, **extra))


def _run_with_stage1_done(tmp_path):
    """Records of Stages I-III, Stage I finished, two models of compare/ with their records."""
    cfg = _cfg(tmp_path)
    with RunLayout.of(cfg).lock():
        write_resolved(cfg)
        for stage in (1, 2, 3):
            record_stage(cfg, stage)
        atomic_write_text(RunLayout.of(cfg).stage(1) / "history.csv", "epoch,val_soft_dice\n1,0.5\n")
        atomic_write_text(RunLayout.of(cfg).stage(1) / "summary.json",
                          json.dumps({"best_epoch": 1, "best_val_soft_dice": 0.5,
                                      "stopped_early": True}))
        for name, depends in (("attention", (1,)), ("iac_residual", (1, 2, 3))):
            atomic_write_text(RunLayout.of(cfg).unit_record(RunLayout.of(cfg).compare(name)),
                              yaml.safe_dump(unit_record(cfg.stage3, depends)))
        atomic_write_text(RunLayout.of(cfg).evaluation / "dice_table.md", "table")
    return cfg


def _snapshot(folder: pathlib.Path) -> dict:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                         if p.is_file() else "dir", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_a_new_run_plans_every_stage_with_stage_one_checks_first(tmp_path):
    plan = build_plan(_cfg(tmp_path), "run")
    assert plan.runs == ("stage1", "stage2", "stage3", "compare", "evaluate")
    assert plan.preflight == Preflight(1)
    assert plan.checked_stages == (1, 2, 3) and plan.writes_records
    assert [s.record for s in plan.steps] == [1, 2, 3, None, None]
    assert [s.seeds for s in plan.steps] == [False, True, False, False, False]
    assert [u.name for u in plan.step("stage3").units] == ["iac", "iac_replace", "unet_continued"]
    assert not any(u.finished for s in plan.steps for u in s.units)
    assert plan.removes == plan.keeps == ()


def test_a_given_unet_and_genotype_skip_stages_one_and_two_and_score_the_unet(tmp_path):
    cfg = _cfg(tmp_path, **{"unet.pretrained": str(tmp_path / "u.keras"),
                            "stage3.genotype": str(tmp_path / "g.json")})
    plan = build_plan(cfg, "run")
    assert plan.runs == ("score_unet", "stage3", "compare", "evaluate")
    assert "unet.pretrained" in plan.step("stage1").skipped
    assert "stage3.genotype" in plan.step("stage2").skipped
    assert plan.preflight == Preflight(3, unet=True, genotypes=(tmp_path / "g.json",))
    assert plan.checked_stages == (3,)


def test_the_other_commands(tmp_path):
    none = _cfg(tmp_path, compare=[])
    plan = build_plan(none, "compare")
    assert plan.runs == () and plan.step("compare").skipped == NO_COMPARISONS
    assert plan.preflight is None and not plan.writes_records and not plan.checks_data
    plan = build_plan(_cfg(tmp_path), "evaluate")
    assert plan.runs == ("evaluate",) and plan.preflight is None and not plan.writes_records
    assert plan.checked_stages == (1, 2, 3) and plan.checks_data
    plan = build_plan(_cfg(tmp_path), "stage3", evaluate=False)
    assert plan.runs == ("stage3",)
    assert "no genotypes" in plan.preflight.missing and "no genotypes" in format_plan(plan)
    layout = RunLayout.of(_cfg(tmp_path))
    layout.claim()
    with layout.lock():
        atomic_write_text(layout.genotype(1), "{}")
    plan = build_plan(_cfg(tmp_path), "stage3", evaluate=False)
    assert plan.preflight == Preflight(3, unet=True, genotypes=(layout.genotype(1),))
    assert build_plan(_cfg(tmp_path), "stage2").preflight == Preflight(2, unet=True)


def test_a_restart_plan_removes_and_keeps_and_the_rerun_starts_from_it(tmp_path):
    cfg = _run_with_stage1_done(tmp_path)
    plan = build_plan(cfg, "run", restart=3)
    assert sorted(p.name for p in plan.removes) == ["evaluation", "iac_residual", "stage3"]
    assert [p.name for p in plan.keeps] == ["attention"]
    assert plan.checked_stages == (1, 2)
    # Stage I is finished: the one pre-flight checks the trained U-Net for Stage II
    assert plan.step("stage1").units[0].finished
    assert plan.preflight == Preflight(2, unet=True)
    assert build_plan(cfg, "run", restart=1).preflight == Preflight(1)
    with pytest.raises(ConfigError, match="iac run CONFIG --restart stage2"):
        build_plan(cfg, "stage3", restart=2)


def test_plan_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    cfg = _run_with_stage1_done(tmp_path)
    before = _snapshot(tmp_path)  # the run folder and the lock file beside it
    args = ["--set", f"output_dir={tmp_path}", "--set", "name=run"]
    assert main(["run", str(SAMPLE), "--plan", "--restart", "stage3", *args]) == 0
    out = capsys.readouterr().out
    assert "--restart stage3 removes: " in out and "keeps: compare/attention/" in out
    assert "unet -> stage1/: finished, skipped" in out and "  5. evaluation:" in out
    assert main(["stage3", str(SAMPLE), "--plan", *args]) == 0
    assert main(["evaluate", str(SAMPLE), "--plan", *args]) == 0
    assert _snapshot(tmp_path) == before
    assert RunLayout.of(cfg).lock_holder() is None


# calls the CLI with the given arguments, then prints whether TensorFlow was imported
_NO_TENSORFLOW = """
import sys
from iac_tf.cli import main
status = main(sys.argv[1:])
print("tensorflow imported:", "tensorflow" in sys.modules or "tf_keras" in sys.modules)
sys.exit(status)
"""


def test_plan_imports_no_tensorflow(tmp_path):
    cfg = _run_with_stage1_done(tmp_path)
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for command, shows in ((["run", str(SAMPLE), "--plan", "--restart", "stage3"],
                            "--restart stage3 removes: "),
                           (["evaluate", str(SAMPLE), "--plan"], "evaluation: reads")):
        done = subprocess.run(
            [sys.executable, "-c", _NO_TENSORFLOW, *command,
             "--set", f"output_dir={tmp_path}", "--set", "name=run"],
            env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"plan of `iac {command[0]}") and shows in done.stdout
        assert "tensorflow imported: False" in done.stdout
    assert _snapshot(tmp_path) == before
    assert RunLayout.of(cfg).lock_holder() is None


def test_the_package_imports_its_names_on_first_use():
    import iac_tf.pipeline as pipeline
    from iac_tf.pipeline import common, evaluation, stages, units

    assert pipeline.evaluate is stages.evaluate and pipeline.evaluation is evaluation
    assert pipeline.run_stage1 is stages.run_stage1 and pipeline.train_unit is units.train_unit
    assert pipeline.common is common and pipeline.common.label_rule is common.label_rule
    assert all(callable(getattr(pipeline, name)) for name in pipeline.__all__)
    assert set(pipeline.__all__) <= set(dir(pipeline))
    with pytest.raises(AttributeError, match="no_such_name"):
        pipeline.no_such_name  # noqa: B018


def test_stage_three_models_are_one_list_for_the_plan_the_stage_and_the_status(tmp_path):
    """The plan's Stage III units, the units Stage III trains and the parts of the run's status
    come from one list (RunLayout.stage3_models): same names, folders and order."""
    sets = {"stage3.genotype_epochs": [1, 2], "stage3.extra_implant_modes": ["replace"],
            "evaluation.unet_continued": True}
    cfg = _cfg(tmp_path, **sets)
    layout = RunLayout.of(cfg)
    layout.claim()
    with layout.lock():
        for epoch in (1, 2):  # the genotypes Stage III reads
            atomic_write_text(layout.genotype(epoch), "{}")
    expected = [("iac_epoch_001", layout.sweep(1)), ("iac_epoch_002", layout.sweep(2)),
                ("iac_replace", layout.compare("iac_replace")),
                ("unet_continued", layout.compare("unet_continued"))]
    step = {s.kind: s for s in build_plan(cfg, "run").steps}["stage3"]
    assert [(u.name, u.folder) for u in step.units] == expected
    trained = stage3_units(cfg)
    assert [(n, f) for n, _, f in trained] == expected[:3]
    assert [g for _, g, _ in trained] == [layout.genotype(1), layout.genotype(2),
                                           layout.genotype(2)]
    from iac_tf.config import to_dict

    parts = [(p.model, p.folder) for p in layout.parts(to_dict(cfg))
             if p.kind not in ("stage1", "stage2")]
    assert parts[:4] == expected
