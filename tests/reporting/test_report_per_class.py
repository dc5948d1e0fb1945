"""`iac report` per class: Dice and HD95 per class, model and split from the runs' stored per-case
numbers, each run's own paired per-case tests when the settings are too few, and a caution beside
every p-value of fewer than five pairs.

Small fake run folders (tests/reporting/test_report_safety.py's ``fake_run``) with hand-written
evaluation tables; every expected number is computed here again from those tables with
``csv`` + NumPy + ``scipy.stats``, not with the report's own code.

Covers: iac_tf/reporting/tables.py
"""

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats

from iac_tf.reporting.collect import read_run
from iac_tf.reporting.tables import run_tests_table
from tests.reporting.test_report_safety import _write, fake_run, report

CLASSES = ("organ", "lesion")
MODELS = ("unet", "iac")


def _tables(rng, cases, nan_at=()):
    """``dice_per_case.csv`` and ``volumetric_per_case.csv`` texts of ``cases``: random Dice and
    HD95 per case, class and model; ``(case, class)`` pairs in ``nan_at`` are absent from both
    label and prediction (empty cells)."""
    dice = io.StringIO()
    vol = io.StringIO()
    d, v = csv.writer(dice, lineterminator="\n"), csv.writer(vol, lineterminator="\n")
    d.writerow(["case", "class", *MODELS])
    v.writerow(["case", "class"] + [f"{m}_{k}" for m in MODELS for k in ("dice", "hd95_mm")])
    for case in cases:
        for cls in CLASSES:
            empty = (case, cls) in nan_at
            scores = {m: ("" if empty else f"{rng.uniform(0.2, 0.95):.4f}") for m in MODELS}
            d.writerow([case, cls, *scores.values()])
            v.writerow([case, cls] + [x for m in MODELS for x in (
                scores[m], "" if empty else f"{rng.uniform(1.0, 30.0):.6f}")])
    return dice.getvalue(), vol.getvalue()


def scored_run(root, name, dataset, val_cases, test_cases=(), nan_at=(), seed=0):
    """A fake finished run whose evaluation/ (and evaluation/test_dt/) hold per-class tables."""
    run = fake_run(root, name, dataset=dataset)
    rng = np.random.default_rng(seed)
    for folder, cases in (("evaluation", val_cases), ("evaluation/test_dt", test_cases)):
        if cases:
            dice, vol = _tables(rng, cases, nan_at)
            _write(run / folder / "dice_per_case.csv", dice)
            _write(run / folder / "volumetric_per_case.csv", vol)
    return run


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _value(cell: str) -> float:
    return math.nan if cell in ("", "n/a") else float(cell)


def expected_means(folder):
    """Independently: {(class, model, "Dice" | "HD95 mm"): mean over the cases with a value}."""
    out = {}
    for file, suffix, what in (("dice_per_case.csv", "", "Dice"),
                               ("volumetric_per_case.csv", "_hd95_mm", "HD95 mm")):
        rows = _rows(folder / file)
        for cls in CLASSES:
            for m in MODELS:
                values = [float(r[m + suffix]) for r in rows if r["class"] == cls and r[m + suffix]]
                out[(cls, m, what)] = sum(values) / len(values)
    return out


def case_means(path, model):
    """Independently: per case (in file order) the mean Dice over its classes with a value."""
    per = {}
    for r in _rows(path):
        if r[model]:
            per.setdefault(r["case"], []).append(float(r[model]))
    return np.array([sum(v) / len(v) for v in per.values()])


def test_per_class_dice_and_hd95_of_both_splits_match_the_stored_per_case_numbers(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = scored_run(runs, "acdc_base", "acdc", ["v1", "v2", "v3"], ["t1", "t2", "t3", "t4"],
                     nan_at={("v2", "lesion"), ("t3", "organ")})
    out = tmp_path / "report"
    rc, _, _ = report(capsys, runs, "--out", out)
    assert rc == 0
    table = _rows(out / "tables" / "per_class.csv")
    assert [(r["split"], r["class"]) for r in table] == [
        (s, c) for s in ("val_dt", "test_dt") for c in CLASSES]
    for split, folder, n in (("val_dt", run / "evaluation", "3"),
                             ("test_dt", run / "evaluation" / "test_dt", "4")):
        want = expected_means(folder)
        for r in (r for r in table if r["split"] == split):
            assert r["run"] == "acdc_base" and r["cases"] == n
            for m in MODELS:
                assert _value(r[f"{m} Dice"]) == pytest.approx(want[(r["class"], m, "Dice")], abs=5e-4)
                assert _value(r[f"{m} HD95 mm"]) == pytest.approx(want[(r["class"], m, "HD95 mm")],
                                                                  abs=5e-3)
    md = (out / "report.md").read_text()
    assert "## Dice and HD95 per class" in md and "| unet HD95 mm |" in md
    assert "<h2 id=per_class>Dice and HD95 per class</h2>" in (out / "report.html").read_text()


def test_a_run_without_volumetric_scores_has_dice_per_class_and_no_hd95(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = scored_run(runs, "acdc_base", "acdc", ["v1", "v2"])
    (run / "evaluation" / "volumetric_per_case.csv").unlink()  # e.g. an npz dataset
    rc, _, _ = report(capsys, runs, "--out", tmp_path / "report")
    assert rc == 0
    rows = _rows(tmp_path / "report" / "tables" / "per_class.csv")
    assert [r["class"] for r in rows] == list(CLASSES)
    assert all(r["unet HD95 mm"] == "n/a" and r["unet Dice"] != "n/a" for r in rows)


def test_one_setting_shows_the_runs_own_paired_tests_with_a_caution_under_five_cases(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = scored_run(runs, "acdc_base", "acdc", ["v1", "v2", "v3"])
    out = tmp_path / "report"
    rc, _, _ = report(capsys, runs, "--out", out)
    assert rc == 0
    rows = _rows(out / "tables" / "run_tests.csv")
    assert [(r["method"], r["class"]) for r in rows] == [("iac", "all classes"), ("iac", "organ"),
                                                          ("iac", "lesion")]
    dice = run / "evaluation" / "dice_per_case.csv"
    b, c = case_means(dice, "unet"), case_means(dice, "iac")
    overall = rows[0]
    assert overall["cases"] == "3" and overall["split"] == "val_dt"
    for column, p in (("t-test p", stats.ttest_rel(c, b).pvalue),
                      ("Wilcoxon p", stats.wilcoxon(c, b).pvalue),
                      ("Wilcoxon p (gain > 0)", stats.wilcoxon(c, b, alternative="greater").pvalue)):
        value, caution = overall[column].split(" ", 1)
        assert float(value) == pytest.approx(p, rel=0.01)
        assert caution == "(caution: n=3 < 5)"
    # every p-value of the report's tables has its caution; the HTML shows it in red
    md = (out / "report.md").read_text()
    assert md.count("**(caution: n=3 < 5)**") == 9
    html = (out / "report.html").read_text()
    assert html.count("<span class=caution>&#9888; (caution: n=3 &lt; 5)</span>") == 9
    assert "Paired tests within each run" in md.split("## Section V-C", 1)[1]
    raw = json.loads((out / "statistics.json").read_text())
    assert raw["per_run"]["acdc_base"]["iac"]["all classes"]["n"] == 3


def test_the_runs_own_tests_per_class_match_scipy_and_need_no_caution_at_five_cases(tmp_path):
    runs = tmp_path / "runs"
    cases = ["c1", "c2", "c3", "c4", "c5", "c6"]
    run = scored_run(runs, "acdc_base", "acdc", ["v1"], cases, nan_at={("c2", "lesion")}, seed=3)
    rec = read_run(run)
    rec.split, rec.case_scores = "test_dt", rec.test_case_scores  # as use_split does
    table, raw = run_tests_table([rec])
    rows = {r[3]: dict(zip(table.header, r)) for r in table.rows}
    assert set(rows) == {"all classes", *CLASSES}
    test = _rows(run / "evaluation" / "test_dt" / "dice_per_case.csv")
    for cls in CLASSES:
        pairs = [(float(r["unet"]), float(r["iac"])) for r in test if r["class"] == cls and r["unet"]]
        b, c = np.array(pairs).T
        row = rows[cls]
        assert row["cases"] == str(len(pairs)) and row["split"] == "test_dt"
        assert float(row["t-test p"]) == pytest.approx(stats.ttest_rel(c, b).pvalue, rel=0.01)
        assert float(row["Wilcoxon p"]) == pytest.approx(stats.wilcoxon(c, b).pvalue, rel=0.01)
        assert "caution" not in row["t-test p"] + row["Wilcoxon p"] + row["Wilcoxon p (gain > 0)"]
        assert raw["acdc_base"]["iac"][cls]["t_test_p"] == pytest.approx(stats.ttest_rel(c, b).pvalue)
    assert len(pairs) == 5  # the lesion row without c2: still five pairs, no caution


def test_two_settings_use_the_statistics_over_settings_with_a_caution_and_no_own_tests(tmp_path, capsys):
    runs = tmp_path / "runs"
    scored_run(runs, "acdc_base", "acdc", ["v1", "v2"], seed=1)
    scored_run(runs, "kits_base", "kits", ["v1", "v2"], seed=2)
    out = tmp_path / "report"
    rc, _, _ = report(capsys, runs, "--out", out)
    assert rc == 0
    (row,) = _rows(out / "tables" / "statistics.csv")
    assert row["settings"] == "2"
    for column in ("t-test p", "Wilcoxon p", "Wilcoxon p (gain > 0)"):
        assert row[column].endswith(" (caution: n=2 < 5)"), row[column]
    assert not (out / "tables" / "run_tests.csv").exists()
    assert "per_run" not in json.loads((out / "statistics.json").read_text())
