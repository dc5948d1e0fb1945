"""RunLayout owns the run folder: its names, the one "finished" rule and the run-folder rule.

Tiny fake run folders (a few bytes each, no model): what the rules read is written by hand.
"""

import ast
import dataclasses
import json
import pathlib
import re

import pytest

from iac_tf import files, grid
from iac_tf import run_layout as rl
from iac_tf.run_layout import RunLayout, UnreadableRecord, run_status, training_done
from tests.finished_runs import finish_parts, finish_search, finish_training

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "iac_tf"
SAMPLE_CONFIG = PACKAGE.parent / "experiments" / "sample.yaml"
SMALL = {"stage1": {"epochs": 2}, "stage2": {"epochs": 3}, "stage3": {"epochs": 4},
         "evaluation": {"unet_continued": False}}


# ---------------------------------------------------------------------------- paths
def test_paths_of_a_run(tmp_path):
    layout = RunLayout(tmp_path / "r")
    root = tmp_path / "r"
    assert layout.config == root / "config.yaml" and layout.version == root / "version.txt"
    assert layout.log == root / "log.txt" and layout.models_index == root / "models.json"
    assert layout.machine_record == root / "machine.json"
    assert layout.unet_record == root / "unet_record.json"
    assert layout.grid_record == root / "grid.json"
    assert layout.stage(2) == root / "stage2" and RunLayout.stage_name(3) == "stage3"
    assert layout.genotype(25) == root / "stage2" / "genotypes" / "epoch_025.json"
    assert layout.arch == root / "stage2" / "arch"
    assert layout.sweep(7) == root / "stage3" / "epoch_007"
    assert layout.selected_genotype == root / "stage3" / "selected_genotype.json"
    assert layout.compare("nested") == root / "compare" / "nested"
    assert layout.best_model(layout.stage(1)) == root / "stage1" / "best_model.keras"
    assert RunLayout.history(layout.stage(3)) == root / "stage3" / "history.csv"
    assert RunLayout.summary(layout.stage(3)) == root / "stage3" / "summary.json"
    assert RunLayout.record(layout.stage(1)) == root / "stage1" / "config.yaml"
    assert layout.dice_csv == root / "evaluation" / "dice_per_case.csv"
    assert layout.test_dice_csv == root / "evaluation" / "test_dt" / "dice_per_case.csv"
    assert layout.stats == root / "evaluation" / "stats.json"
    assert layout.split_evaluation("val_dt", "val_dt") == root / "evaluation"
    assert layout.split_evaluation("test_dt", "val_dt") == root / "evaluation" / "test_dt"
    assert rl.epoch_number(rl.epoch_name(25)) == 25 and rl.epoch_number("iac") is None
    assert rl.epoch_number("epoch_x") is None
    with pytest.raises(ValueError, match="stage must be one of"):
        layout.stage(4)


def test_every_model_of_a_run_has_the_folder_its_stage_writes():
    layout = RunLayout("/runs/r")
    assert layout.model_folder("unet") == layout.stage(1)
    assert layout.model_folder("attention") == layout.compare("attention")
    stage3 = layout.stage3_models((3, 25), ("replace",), unet_continued=True)
    assert [m.name for m in stage3] == ["iac_epoch_003", "iac_epoch_025", "iac_replace",
                                        "unet_continued"]
    assert all(layout.model_folder(m.name) == m.folder for m in stage3)
    assert all(layout.model_folder(m.name) == m.folder for m in layout.stage3_models())


def test_a_sweep_model_name_gives_back_its_epoch():
    assert rl.sweep_model(25) == "iac_epoch_025"
    assert [rl.sweep_epoch(rl.sweep_model(e)) for e in (1, 25, 200)] == [1, 25, 200]
    for name in ("iac", "unet", "iac_replace", rl.implant_model("residual"), "iac_epoch_",
                 "iac_epoch_x1", "epoch_025", "unet_continued"):
        assert rl.sweep_epoch(name) is None, name


@pytest.mark.parametrize("recorded, expected", [
    ({}, ()),
    ({"method": "iac", "compare": ["attention", "nested"]}, ("attention", "nested")),
    ({"method": "nested"}, ("nested",)),
    ({"method": "nested", "compare": ["attention", "nested"]}, ("nested", "attention"))])
def test_a_recorded_config_trains_the_comparisons_of_the_loaded_one(recorded, expected):
    from iac_tf.config.experiment import load_experiment

    loaded = dataclasses.replace(load_experiment(SAMPLE_CONFIG),
                                 method=recorded.get("method", "iac"),
                                 compare=tuple(recorded.get("compare", ())))
    assert loaded.comparisons == expected
    assert rl.recorded_comparisons(recorded) == expected


def _string_constants(path: pathlib.Path):
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_but_run_layout_spells_a_run_file_name():
    """Every file name of a run is RunLayout's: code elsewhere reaches it through RunLayout or
    its constants (docstrings may name files for the reader)."""
    names = [rl.CONFIG, rl.VERSION, rl.LOG, rl.MODELS_INDEX, rl.DATA_RECORD, rl.UNET_RECORD,
             rl.MACHINE_RECORD, rl.GRID_RECORD, rl.BEST_MODEL, rl.SUMMARY, rl.HISTORY,
             rl.LEARNING_CURVES, rl.SEARCH_TIME, rl.UNET_SCORE, rl.SELECTED_GENOTYPE,
             rl.GENOTYPE_EPOCHS_PLOT, rl.UNIT_RECORD, rl.DICE_PER_CASE, rl.STATS, rl.DICE_TABLE,
             rl.DICE_PAIRED_PLOT, rl.DICE_METHODS_PLOT, rl.VOLUMETRIC_CSV, rl.VOLUMETRIC_SUMMARY,
             rl.EPOCH_GLOB] + [f"{d}/" for d in ("stage1", "stage2", "stage3", rl.COMPARE,
                                                 rl.EVALUATION, rl.GENOTYPES, rl.ARCH)]
    spelled = re.compile("|".join(r"(?<![\w.])" + re.escape(name) for name in names))
    found = [f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "run_layout.py"
             for line, text in _string_constants(path) if spelled.search(text)]
    assert found == []


# ---------------------------------------------------------------------------- the finished rule
def test_a_training_is_finished_with_its_summary_all_its_epochs_and_its_export(tmp_path):
    layout = RunLayout(tmp_path)
    folder = layout.stage(3)
    assert layout.trained(folder, 2) is None  # nothing there
    finish_training(folder, 1)
    assert layout.trained(folder, 2) is None  # one of two epochs
    assert layout.trained(folder, 1)["summary"]["best_epoch"] == 1
    assert layout.trained(folder, 1, needs_export=True) is None  # killed before the export
    (folder / rl.SAVEDMODEL).mkdir()
    assert len(layout.trained(folder, 1, needs_export=True)["history"]) == 1
    RunLayout.summary(folder).write_text(json.dumps({"stopped_early": True}))
    assert layout.trained(folder, 200) is not None  # early stopping finishes it
    assert training_done(folder, 200) is not None  # the module function asks the same rule
    RunLayout.history(folder).write_text("epoch,soft_dice\nx,0.5\n")
    with pytest.raises(UnreadableRecord, match="history.csv: damaged"):
        layout.trained(folder, 1)


def test_a_search_is_finished_with_its_record_and_its_genotypes(tmp_path):
    layout = RunLayout(tmp_path)
    assert not layout.search_done(3)
    layout.search_time.parent.mkdir(parents=True)
    layout.search_time.write_text(json.dumps({"epochs": 3}))
    assert not layout.search_done(3)  # a record without genotypes
    finish_search(layout, 2)
    assert not layout.search_done(3)  # two of three epochs
    finish_search(layout, 3)
    assert layout.search_done(3)
    layout.search_time.write_text(json.dumps({"epochs": 2, "stopped_early": True}))
    assert layout.search_done(5)


def test_the_parts_of_a_run_follow_its_config():
    layout = RunLayout("r")
    names = [p.name for p in layout.parts({})]  # the config classes' defaults
    assert names == ["stage1", "stage2", "stage3", "compare/unet_continued"]
    assert [p.epochs for p in layout.parts({})] == [200, 200, 200, 200]
    cfg = {"unet": {"pretrained": "u.keras"}, "stage3": {"epochs": 4, "genotype_epochs": [1, 2],
                                                         "extra_implant_modes": ["residual"]},
           "compare": ["nested"], "evaluation": {"unet_continued": False}}
    parts = layout.parts(cfg)
    assert [(p.name, p.model, p.kind, p.needs_export) for p in parts] == [
        ("stage2", None, "stage2", False),
        ("stage3/epoch_001", "iac_epoch_001", "stage3", True),
        ("stage3/epoch_002", "iac_epoch_002", "stage3", True),
        ("compare/iac_residual", "iac_residual", "stage3", True),
        ("compare/nested", "nested", "compare", False)]
    comparison_only = layout.parts({"method": "nested", "stage3": {"genotype": "g.json"}})
    assert [p.name for p in comparison_only] == ["stage1", "compare/nested"]


def test_status_and_the_grid_estimate_ask_the_same_rule(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(json.dumps(SMALL))
    assert run_status(run).missing == ["stage1", "stage2", "stage3", "evaluation"]
    assert grid.estimated_epochs(SMALL, run) == {"stage1": 2, "stage2": 3, "stage3": 4, "compare": 0}
    finish_training(run / "stage1", 1)  # one of two epochs: not finished for either
    assert "stage1" in run_status(run).missing
    assert grid.estimated_epochs(SMALL, run)["stage1"] == 2
    finish_training(run / "stage1", 2)
    assert "stage1" not in run_status(run).missing
    assert grid.estimated_epochs(SMALL, run)["stage1"] == 0
    finish_parts(run, SMALL)
    assert run_status(run).missing == ["evaluation"]
    assert grid.estimated_epochs(SMALL, run) == dict.fromkeys(("stage1", "stage2", "stage3", "compare"), 0)
    (run / "evaluation").mkdir()
    (run / "evaluation" / "dice_per_case.csv").write_text("case,class,unet,iac\n")
    assert run_status(run).finished
    RunLayout.summary(run / "stage3").write_text("{cut")  # a damaged record: not finished
    assert run_status(run).missing == ["stage3"]
    assert grid.estimated_epochs(SMALL, run)["stage3"] == 4


def test_the_grid_estimate_reads_epochs_and_unet_continued_from_the_config():
    cfg = {"stage1": {"epochs": 5}, "stage2": {"epochs": 6}, "stage3": {"epochs": 7},
           "compare": ["nested"]}
    assert grid.estimated_epochs(cfg) == {"stage1": 5, "stage2": 6, "stage3": 7, "compare": 14}
    cfg["evaluation"] = {"unet_continued": False}
    assert grid.estimated_epochs(cfg)["compare"] == 7
    assert grid.estimated_epochs({"method": "nested", "stage3": {"epochs": 3}})["compare"] == 3


# ---------------------------------------------------------------------------- the run-folder rule
def test_one_rule_says_what_a_run_folder_is(tmp_path):
    marked, old, mine = tmp_path / "marked", tmp_path / "old", tmp_path / "mine"
    for d in (marked, old, mine):
        d.mkdir()
    (marked / files.RUN_MARKER).write_text("an iac_tf run folder\n")
    (old / "config.yaml").write_text("{}")
    (old / "models.json").write_text("{}")
    (mine / "config.yaml").write_text("{}")
    for folder, run, old_run in ((marked, True, False), (old, False, True), (mine, False, False),
                                 (tmp_path / "absent", False, False)):
        layout = RunLayout(folder)
        assert layout.is_run() == files.is_run_folder(folder) == run, folder
        assert layout.looks_like_old_run() == old_run, folder
        assert layout.looks_like_run() == (run or old_run), folder
        assert (rl.run_above(folder) == folder) == (run or old_run), folder
    (marked / files.RUN_MARKER).unlink()
    (marked / files.RUN_MARKER).mkdir()  # a folder of that name is no marker
    assert not RunLayout(marked).is_run() and not files.is_run_folder(marked)
