"""Run status: every part a run's config asks for is checked, absent parts are named.

Covers: iac_tf/reporting/tables.py
"""

import pytest
import yaml

from iac_tf.reporting.collect import case_scores
from iac_tf.run_layout import RunLayout, run_status
from tests.finished_runs import finish_search, finish_training

CFG = {"stage1": {"epochs": 1}, "stage2": {"epochs": 2},
       "stage3": {"epochs": 1, "genotype_epochs": [1, 2], "export_savedmodel": False},
       "evaluation": {"unet_continued": False}, "compare": ["nested"]}


def _touch(path, text="{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_missing_parts_are_named_until_the_run_is_finished(tmp_path):
    run = tmp_path / "r"
    assert run_status(run, CFG).state == "not started"
    _touch(run / "config.yaml", yaml.safe_dump(CFG))
    finish_training(run / "stage1", 1)
    finish_training(run / "stage3" / "epoch_001", 1)
    s = run_status(run)
    assert s.state == "partial"
    assert s.missing == ["stage2", "stage3/epoch_002", "compare/nested", "evaluation"]
    finish_search(RunLayout(run), 2)
    finish_training(run / "stage3" / "epoch_002", 1)
    finish_training(run / "compare" / "nested", 1)
    _touch(run / "evaluation" / "dice_per_case.csv", "case,class,unet,iac\nc1,a,0.5,0.6\n")
    assert run_status(run).missing == ["evaluation column nested"]
    _touch(run / "evaluation" / "dice_per_case.csv",
           "case,class,unet,iac,nested,iac_epoch_001\nc1,a,0.5,0.6,0.7,0.4\nc1,b,0.3,,0.1,0.2\n")
    assert run_status(run).finished


def test_comparison_only_run_needs_no_search_and_stage3_genotype_needs_no_stage2(tmp_path):
    run = tmp_path / "r"
    _touch(run / "config.yaml", "")
    finish_training(run / "stage1", 200)  # the default epochs of an empty config
    finish_training(run / "compare" / "nested", 200)
    _touch(run / "evaluation" / "dice_per_case.csv", "case,class,unet,nested\n")
    assert run_status(run, {"method": "nested"}).finished
    finish_training(run / "stage3", 200, export=True)
    assert run_status(run, {"stage3": {"genotype": "g.json"},
                            "evaluation": {"unet_continued": False}}).missing == ["evaluation column iac"]


def test_case_scores_average_present_classes_then_cases(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("case,class,unet,iac,gain\nc1,a,0.5,0.7,0.2\nc1,b,nan,0.1,nan\nc2,a,0.2,0.4,0.2\n"
                    "c2,b,0.4,0.6,0.2\n")
    s = case_scores(path)
    assert set(s) == {"unet", "iac"}
    assert abs(s["unet"][0] - 0.5) < 1e-12 and abs(s["unet"][1] - 0.3) < 1e-12
    assert abs(s["iac"][0] - 0.4) < 1e-12 and abs(s["iac"][1] - 0.5) < 1e-12


def test_a_search_stopped_when_stable_shows_its_epochs_and_the_hours_saved(tmp_path):
    import json

    from iac_tf.reporting.collect import read_run
    from iac_tf.reporting.tables import table_iii

    run = tmp_path / "r"
    _touch(run / "config.yaml", yaml.safe_dump(CFG))
    _touch(run / "stage2" / "search_time.json", json.dumps(
        {"epochs": 3, "planned_epochs": 6, "stopped_early": True, "total_seconds": 3600.0,
         "seconds_saved_estimate": 7200.0, "stop_when_stable": 2}))
    rec = read_run(run)
    assert rec.stage2_epochs == "3/6 (stable)" and rec.stage2_seconds_saved == 7200.0
    row = table_iii([rec]).rows[0]
    assert row[2:5] == ["3/6 (stable)", "1.0000", "2.0000"]


def _scored_run(root, name, val, test=None):
    run = root / name
    _touch(run / "config.yaml", yaml.safe_dump(CFG))
    _touch(run / "evaluation" / "dice_per_case.csv", f"case,class,unet,iac\nc1,a,0.5,{val}\n")
    if test is not None:
        _touch(run / "evaluation" / "test_dt" / "dice_per_case.csv",
               f"case,class,unet,iac\nt1,a,0.4,{test}\nt2,a,0.4,{test}\n")
    return run


def test_the_report_scores_on_test_dt_when_every_run_has_it(tmp_path):
    from iac_tf.reporting.collect import read_run, use_split

    runs = [read_run(_scored_run(tmp_path, n, 0.6, 0.45)) for n in ("a", "b")]
    assert use_split(runs) == "test_dt"
    assert all(r.split == "test_dt" and r.scores["iac"] == 0.45 for r in runs)
    assert len(runs[0].case_scores["iac"]) == 2


def test_the_report_stays_on_val_dt_without_test_splits_and_refuses_a_mix(tmp_path):
    from iac_tf.errors import UserError
    from iac_tf.reporting.collect import read_run, use_split

    plain = [read_run(_scored_run(tmp_path, n, 0.6)) for n in ("a", "b")]
    assert use_split(plain) == "val_dt" and plain[0].scores["iac"] == 0.6
    mixed = [read_run(_scored_run(tmp_path / "m", "c", 0.6, 0.45)),
             read_run(_scored_run(tmp_path / "m", "d", 0.6))]
    with pytest.raises(UserError, match=r"(?s)test_dt scores \(c\).*do not \(d\)"):
        use_split(mixed)


def test_table_i_names_the_split_its_unet_dice_is_of(tmp_path):
    """Table I's U-Net column shows test_dt Dice once the report scores on test_dt, and its
    header says so (it said val_dt while printing test_dt values)."""
    from iac_tf.reporting.collect import read_run, use_split
    from iac_tf.reporting.tables import table_i

    def run(root, name, test):
        path = _scored_run(root, name, 0.6, test)
        _touch(path / "evaluation" / "test_dt" / "dice_per_case.csv",
               f"case,class,unet,iac\nt1,a,{test},0.7\n")
        _touch(path / "evaluation" / "stats.json", '{"rule": {"metric": "labels"}}')
        return read_run(path)

    records = [run(tmp_path, "r", 0.25)]
    assert use_split(records) == "test_dt"
    table = table_i(records)
    assert table.header[2].endswith(" test_dt") and "val_dt" not in table.header[2]
    assert table.rows[0][2] == "0.250"  # the test_dt U-Net Dice under the test_dt header
    assert "test_dt: mean per-case Dice of the U-Net" in table.note
    assert records[0].rule == "labels"  # the rule of the run's evaluation, for the report
    plain = [read_run(_scored_run(tmp_path / "v", "r", 0.6))]
    assert use_split(plain) == "val_dt"
    assert table_i(plain).header[2].endswith(" val_dt") and table_i(plain).rows[0][2] == "0.500"


def test_the_split_and_rule_columns_are_not_models(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("split,metric,case,class,unet,iac\nval_dt,labels,c1,a,0.5,0.7\n")
    assert set(case_scores(path)) == {"unet", "iac"}
