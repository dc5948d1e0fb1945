"""The `iac` command line: config errors, and the whole three-stage pipeline on a tiny setting of
the bundled sample (base U-Net at 64x64, a couple of epochs per stage)."""

import csv
import json
import os
import pathlib


from iac_tf.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "experiments" / "sample.yaml"


def test_unknown_key_is_an_error_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLE.read_text().replace("\nstage2:\n", "\nstage2:\n  epochz: 3\n", 1))
    assert main(["stage2", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "stage2.epochz" in err and str(bad) in err


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path, capsys):
    bad = tmp_path / "twice.yaml"
    bad.write_text(SAMPLE.read_text() + "\nstage2:\n  epochs: 3\n")
    assert main(["doctor", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'stage2' is given twice" in err and str(bad) in err and err.count("\n") == 1


def test_wrong_type_and_missing_file(tmp_path, capsys):
    assert main(["stage1", str(SAMPLE), "--set", "stage1.batch_size=big"]) == 2
    assert "stage1.batch_size" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_stage2_without_trained_unet_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc = main(["stage2", str(SAMPLE), "--set", f"output_dir={tmp_path}",
               "--set", f"data.cache_dir={tmp_path / 'cache'}"])
    assert rc == 2
    assert "Run Stage I first" in capsys.readouterr().err


def test_three_stage_pipeline_on_the_sample(tmp_path, monkeypatch):
    """Stages I, II, III as separate commands (base U-Net, 64x64, a few epochs each). The Stage II
    wall time (supernet build, tracing, 2 search epochs) is written to stage2_seconds.txt."""
    monkeypatch.chdir(ROOT)
    sets = {
        "name": "tiny", "output_dir": str(tmp_path), "data.cache_dir": str(tmp_path / "cache"),
        "data.patch_size": 64, "unet.options": "{base_filters: 4}",
        "stage1.epochs": 2, "stage1.batch_size": 16, "stage1.verbose": 0,
        "stage2.epochs": 2, "stage2.warmup_epochs": 0, "stage2.batch_size": 16,
        "stage2.cell_channels": 4, "stage2.cell_steps": 2, "stage2.verbose": 0,
        "stage3.epochs": 1, "stage3.batch_size": 16, "stage3.cell_channels": 4, "stage3.verbose": 0,
    }
    overrides = []
    for k, v in sets.items():
        overrides += ["--set", f"{k}={v}"]
    run = tmp_path / "tiny"
    assert main(["stage1", str(SAMPLE)] + overrides) == 0
    assert main(["stage2", str(SAMPLE)] + overrides) == 0
    assert main(["stage3", str(SAMPLE)] + overrides) == 0
    assert (run / "config.yaml").is_file() and (run / "version.txt").is_file()
    assert (run / "stage1" / "best_model.keras").is_file()
    genotypes = sorted(p.name for p in (run / "stage2" / "genotypes").glob("*.json"))
    assert genotypes == ["epoch_001.json", "epoch_002.json"]
    from iac_tf.genotype import Genotype  # stage2.cell_steps: 2 -> a 2-node cell, 5 searched edges

    assert Genotype.from_json(run / "stage2" / "genotypes" / "epoch_002.json").steps == 2
    arch = json.loads((run / "stage2" / "arch" / "epoch_002.json").read_text())
    assert len(arch["beta"]) == 5 and [len(p) for p in arch["psi"]] == [2, 3]
    rows = list(csv.DictReader(open(run / "stage2" / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert (run / "stage3" / "savedmodel" / "saved_model.pb").is_file()
    stats = json.loads((run / "evaluation" / "stats.json").read_text())
    assert stats["overall"]["n"] >= 1
    assert 0.0 <= stats["overall"]["mean_baseline"] <= 1.0
    assert (run / "evaluation" / "dice_table.md").is_file()
    assert (run / "stage1" / "learning_curves.png").is_file()
    assert os.path.getsize(run / "evaluation" / "dice_paired.png") > 0
    # Stage III scores epoch 0; the budget-matched U-Net is trained, registered, reported
    assert [r["epoch"] for r in csv.DictReader(open(run / "stage3" / "history.csv"))] == ["0", "1"]
    assert (run / "compare" / "unet_continued" / "best_model.keras").is_file()
    models = json.loads((run / "models.json").read_text())
    assert {"unet", "iac", "unet_continued"} <= set(models)
    header = next(csv.reader(open(run / "evaluation" / "dice_per_case.csv")))
    assert header == ["split", "metric", "case", "class", "unet", "iac", "iac_replace",
                      "unet_continued"]  # sample.yaml
    assert "iac_vs_unet_continued" in stats["pairs"]
