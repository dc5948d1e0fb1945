"""`iac run` with a genotype-epoch sweep and a comparison on the bundled sample (base U-Net with
4 filters at 32x32, one or two epochs per stage): both Stage III folders, the Fig. 6 plot, the
per-method table, models.json; a rerun trains nothing; a missing epoch fails before anything runs."""

import csv
import json
import pathlib

from iac_tf.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "experiments" / "sample.yaml"


def _args(tmp_path, **extra):
    sets = {
        "name": "sweep", "output_dir": str(tmp_path), "data.cache_dir": str(tmp_path / "cache"),
        "data.patch_size": 32, "unet.options": "{base_filters: 4}",
        "stage1.epochs": 1, "stage1.batch_size": 32, "stage1.verbose": 0,
        "stage2.epochs": 2, "stage2.warmup_epochs": 0, "stage2.batch_size": 32,
        "stage2.cell_channels": 4, "stage2.cell_steps": 2, "stage2.verbose": 0,
        "stage3.epochs": 1, "stage3.batch_size": 32, "stage3.cell_channels": 4, "stage3.verbose": 0,
        "stage3.export_savedmodel": False, "stage3.genotype_epochs": "[1, 2]",
        "stage3.extra_implant_modes": "[]", "compare": "[attention]", **extra,
    }
    out = [str(SAMPLE)]
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    return out


def test_missing_genotype_epoch_fails_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["run"] + _args(tmp_path, **{"stage3.genotype_epochs": "[1, 5]"})) == 2
    err = capsys.readouterr().err
    assert "stage3.genotype_epochs" in err and "5" in err
    assert not (tmp_path / "sweep").exists()


def test_sweep_and_comparison_run_then_resume(tmp_path, capsys, monkeypatch):
    import iac_tf.pipeline.common as common
    import iac_tf.pipeline.stages as stages

    monkeypatch.chdir(ROOT)
    calls = {"prepare": 0, "check_stages": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(common, "prepare_dataset", counted("prepare", common.prepare_dataset))
    monkeypatch.setattr(stages, "check_stages", counted("check_stages", stages.check_stages))
    assert main(["run"] + _args(tmp_path)) == 0
    # `iac run` checks the stage records and prepares the data once, for every stage
    assert calls == {"prepare": 1, "check_stages": 1}
    run = tmp_path / "sweep"
    for e in ("epoch_001", "epoch_002"):
        assert (run / "stage3" / e / "best_model.keras").is_file()
        assert (run / "stage3" / e / "history.csv").is_file()
    assert (run / "stage3" / "genotype_epochs.png").stat().st_size > 0
    assert (run / "compare" / "attention" / "best_model.keras").is_file()
    models = json.loads((run / "models.json").read_text())
    assert set(models) == {"unet", "iac", "iac_epoch_001", "iac_epoch_002", "unet_continued", "attention"}
    selected = json.loads((run / "stage3" / "selected_genotype.json").read_text())
    scores = selected["best_val_score"]
    assert models["iac"] == models[f"iac_epoch_{selected['epoch']:03d}"]
    assert scores[f"iac_epoch_{selected['epoch']:03d}"] == max(scores.values())

    rows = list(csv.DictReader(open(run / "evaluation" / "dice_per_case.csv")))
    methods = ["iac", "iac_epoch_001", "iac_epoch_002", "unet_continued", "attention"]
    assert list(rows[0]) == ["split", "metric", "case", "class", "unet"] + methods
    stats = json.loads((run / "evaluation" / "stats.json").read_text())
    assert set(methods) <= set(stats["methods"])
    for entry in stats["methods"].values():
        assert {"mean_gain", "gain_ci95", "t_test_p", "wilcoxon_p", "wilcoxon_greater_p"} <= set(entry["overall"])
    table = (run / "evaluation" / "dice_table.md").read_text()
    assert table.splitlines()[0].startswith("Best epochs selected on: `val_dt`. Scored on: `val_dt`")
    assert table.splitlines()[2].startswith("Decision rule: `labels` (one label per voxel")
    assert table.splitlines()[4] == "| class | n | unet | " + " | ".join(methods) + " |"

    # a rerun keeps every finished Stage III and comparison
    mtimes = {p: p.stat().st_mtime_ns for p in run.glob("*/**/best_model.keras")}
    capsys.readouterr()
    assert main(["run"] + _args(tmp_path)) == 0
    out = capsys.readouterr().out
    for name in ("Stage III iac_epoch_001", "Stage III iac_epoch_002", "comparison attention"):
        assert f"{name}: complete" in out
    assert mtimes == {p: p.stat().st_mtime_ns for p in run.glob("*/**/best_model.keras")}
    # the console of both commands, timed, in the run's log (appended)
    log = (run / "log.txt").read_text().splitlines()
    assert sum(" START   " in line for line in log) == 2
    assert any("INFO    stage1: epoch 1/1 done in " in line for line in log)
    assert any("stage2: epoch 1/2 done in " in line and "left (ETA " in line for line in log)
    assert any("Stage III iac_epoch_001: complete" in line for line in log)
    assert all(line[:4].isdigit() and line[4] == "-" for line in log if "START" in line or "done in" in line)
