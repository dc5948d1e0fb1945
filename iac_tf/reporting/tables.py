"""The paper's tables (Section V) built from run records.

A setting is one run (a dataset x backbone pair); its score for a model is the mean over val_dt
cases of the per-case Dice (:class:`~iac_tf.reporting.collect.RunRecord`). Tables II, IV, V and
the Section V-C statistics aggregate settings; Table VI lists each setting's genotype epochs.
The per-class table lists each run's Dice and HD95 per class, split and model; with fewer than
two settings per method the Section V-C statistics give way to each run's own paired per-case
tests. A p-value of fewer than five pairs carries a caution (:func:`fp`).

One run per setting: every table counts each setting once, so two runs of one dataset x backbone
pair are refused (:func:`check_one_run_per_setting`, called by :func:`all_tables`) with an
error naming both run folders, before any table is built.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from iac_tf.config.data import TEST_SPLIT
from iac_tf.errors import UserError
from iac_tf.evaluation.across_settings import compare_settings, mean_std
from iac_tf.evaluation.stats import caution, compare_paired, mean_ci
from iac_tf.reporting import paper
from iac_tf.reporting.collect import RunRecord
from iac_tf.run_layout import (DICE_PER_CASE, EVALUATION, HISTORY, MACHINE_RECORD, SEARCH_TIME,
                               VOLUMETRIC_CSV)

NA = "n/a"


@dataclasses.dataclass
class Table:
    key: str          # file stem: table_i, table_ii, ...
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def f3(x) -> str:
    return NA if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def fp(x, n: int | None = None) -> str:
    """A p-value; of ``n`` pairs, with the caution of :func:`~iac_tf.evaluation.stats.caution`
    beside it when ``n`` is small."""
    if x is None or math.isnan(x):
        return NA
    return f"{x:.2g}" + ("" if n is None else caution(n))


def mm(x) -> str:
    return NA if x is None or math.isnan(x) else f"{x:.2f}"


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def _ci(values) -> str:
    m, lo, hi = mean_ci(values)
    if math.isnan(m):
        return NA
    return f"{m:.3f} ({f3(lo)}; {f3(hi)})" if not math.isnan(lo) else f"{m:.3f} (single setting)"


def _ordered(values, order) -> list:
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


def methods_of(records: list[RunRecord]) -> list[str]:
    names = {m for r in records for m in r.methods}
    return sorted(names, key=lambda m: (m != "iac", m))


def datasets_of(records) -> list[str]:
    return _ordered({r.dataset for r in records}, [d.lower() for d in paper.DATASETS] + list(paper.DATASETS))


def backbones_of(records) -> list[str]:
    return _ordered({r.backbone for r in records}, paper.BACKBONES)


class SettingRunTwice(UserError):
    """Two run folders of one setting (dataset x backbone) were given to one report."""


def check_one_run_per_setting(records) -> None:
    """Raise :class:`SettingRunTwice` when two existing runs share a dataset and a backbone
    (runs that do not exist are only listed in the Runs table and are not checked)."""
    seen: dict[tuple[str, str], RunRecord] = {}
    for r in records:
        if not r.status.exists:
            continue
        other = seen.setdefault((r.dataset, r.backbone), r)
        if other is not r:
            raise SettingRunTwice(
                f"{other.run_dir} and {r.run_dir} are two runs of one setting (dataset "
                f"{r.dataset}, backbone {r.backbone}); every table counts a setting once, so pass "
                "only one run folder per setting. Nothing was written")


def table_i(records) -> Table:
    """Stage I's U-Nets: train_dt soft Dice and the U-Net's per-case Dice of the split the
    records' scores are of (``RunRecord.split``: val_dt, or test_dt after
    :func:`~iac_tf.reporting.collect.use_split`); the header names that split."""
    ds = datasets_of(records)
    split_of = {d: _split_of([r for r in records if r.dataset == d]) for d in ds}
    header = ["backbone"] + [f"{d} {part}" for d in ds for part in ("train_dt", split_of[d])]
    rows = []
    for bb in backbones_of(records):
        row = [bb]
        for d in ds:
            rec = [r for r in records if r.dataset == d and r.backbone == bb]  # one at most
            row += [f3(rec[0].train_dice), f3(rec[0].scores.get("unet", math.nan))] if rec else ["", ""]
        rows.append(row)
    splits = sorted(set(split_of.values()))
    return Table("table_i", "Table I: Dice of the U-Nets (Stage I)", header, rows,
                 f"train_dt: Stage I's slice-level soft Dice on train_dt at its best epoch ({HISTORY}); "
                 f"{' / '.join(splits) or 'val_dt'}: mean per-case Dice of the U-Net on that split "
                 "(the U-Net column of the evaluation"
                 + ("; test_dt: whole volumes" if "test_dt" in splits else "") + "). "
                 "An empty cell: no run of that setting.")


def _split_of(records) -> str:
    """The split the scores of ``records`` are of (one per report, :func:`use_split`)."""
    splits = sorted({r.split for r in records})
    return "/".join(splits) or "val_dt"


def _gains(records, method) -> list[float]:
    return [r.scores[method] - r.scores["unet"] for r in records
            if method in r.scores and "unet" in r.scores
            and not math.isnan(r.scores[method]) and not math.isnan(r.scores["unet"])]


def table_ii(records) -> Table:
    methods = methods_of(records)
    rows = []
    for d in datasets_of(records) + ["overall"]:
        sel = records if d == "overall" else [r for r in records if r.dataset == d]
        row = [d]
        for m in methods:
            g = _gains(sel, m)
            mean, var, _ = mean_std(g)
            row.append(NA if not g else f"{mean:+.3f} ({f3(var)})")
        rows.append(row)
    return Table("table_ii", "Table II: Dice change over the U-Net, mean (variance) over settings",
                 ["dataset"] + methods, rows,
                 "Variance with ddof=1 over the dataset's settings; n/a: fewer than one setting with "
                 "that method (variance n/a: a single setting). The paper's Table II 'variance' "
                 "matches the standard deviation of its Table VI (docs/decisions.md).")


def table_iii(records) -> Table:
    lit = paper.TABLE_III_LITERATURE
    header = (["dataset", "runs", "Stage II epochs", "Stage II h", "Stage II h saved (est.)",
               "Stage III h", "Stage II + III h, mean (std)", "GPU"]
              + [f"{m} h (literature)" for m in lit] + ["paper's IAC h (literature)"])
    rows = []
    for d in datasets_of(records):
        sel = [r for r in records if r.dataset == d]
        s2 = [r.stage2_seconds / 3600 for r in sel if not math.isnan(r.stage2_seconds)]
        s3 = [r.stage3_seconds / 3600 for r in sel if not math.isnan(r.stage3_seconds)]
        both = [(r.stage2_seconds + r.stage3_seconds) / 3600 for r in sel
                if not math.isnan(r.stage2_seconds) and not math.isnan(r.stage3_seconds)]
        m, _, sd = mean_std(both)
        gpus = ", ".join(sorted({r.device for r in sel}))
        key = d.upper()
        saved = [r.stage2_seconds_saved / 3600 for r in sel if not math.isnan(r.stage2_seconds_saved)]
        epochs = ", ".join(r.stage2_epochs for r in sel if r.stage2_epochs) or NA
        row = [d, str(len(sel)), epochs, _h(s2), _h(saved), _h(s3),
               NA if not both else (f"{m:.4f} ({sd:.4f})" if not math.isnan(sd) else f"{m:.4f}"), gpus]
        row += [f"{lit[meth][key]:.1f}" if key in lit[meth] else NA for meth in lit]
        row.append("{:.1f} ({:.1f})".format(*paper.TABLE_III_PAPER_HOURS[key])
                   if key in paper.TABLE_III_PAPER_HOURS else NA)
        rows.append(row)
    return Table("table_iii", "Table III: search + final training time (hours)", header, rows,
                 f"Our hours: Stage II's {SEARCH_TIME} plus the sum of Stage III epoch times "
                 "(every genotype epoch of a sweep), averaged over the dataset's backbones. Stage II "
                 "epochs: searched / planned per run, '(stable)' where stage2.stop_when_stable "
                 "stopped the search; the hours it saved are estimated at that search's mean epoch "
                 "time. Literature "
                 f"columns: values printed in the paper's Table III, rescaled by the paper to an "
                 f"{paper.TABLE_III_GPU}; not measured here.")


def _h(values) -> str:
    return NA if not values else f"{float(np.mean(values)):.4f}"


def _three(records, group_key, groups, title, key, note) -> Table:
    cols = ["unet", "iac", "nested"]
    rows = []
    for g in groups + ["overall"]:
        sel = records if g == "overall" else [r for r in records if group_key(r) == g]
        row = [g, str(len(sel))]
        for m in cols:
            row.append(_ci([r.scores[m] for r in sel if m in r.scores]))
        rows.append(row)
    return Table(key, title, ["group", "runs", "U-Net", "IAC", "nested (U-Net++)"], rows, note)


def table_iv(records) -> Table:
    return _three(records, lambda r: r.dataset, datasets_of(records),
                  "Table IV: mean Dice (95% CI) per dataset", "table_iv",
                  "Mean over the dataset's settings (backbones) of each setting's mean per-case Dice; "
                  "t-based 95% CI. n/a: no run has that model.")


def table_v(records) -> Table:
    return _three(records, lambda r: r.backbone, backbones_of(records),
                  "Table V: mean Dice (95% CI) per backbone", "table_v",
                  "Mean over the backbone's settings (datasets); t-based 95% CI.")


def table_vi(records) -> Table:
    epochs = sorted({e for r in records for e in r.epoch_scores})
    rows = []
    sources = set()
    for r in sorted(records, key=lambda r: (r.dataset, r.backbone, r.name)):
        if not r.epoch_scores and "iac" not in r.scores:
            continue
        sources.add(r.epoch_score_source or "per-case Dice (evaluation)")
        rows.append([r.dataset, r.backbone, r.name, f3(r.scores.get("unet", math.nan))]
                    + [f3(r.epoch_scores[e]) if e in r.epoch_scores else NA for e in epochs]
                    + [f3(r.scores.get("iac", math.nan))])
    return Table("table_vi", "Table VI: Dice of the genotypes of each search epoch",
                 ["dataset", "backbone", "run", "U-Net"] + [f"EP {e}" for e in epochs] + ["IAC (selected)"],
                 rows, "Genotype-epoch scores: " + "; ".join(sorted(sources)) + ". n/a: that epoch was "
                 "not part of the run's sweep.")


def statistics_table(records) -> tuple[Table, dict]:
    """Section V-C over the settings: each method against the U-Net."""
    rows, raw = [], {}
    for m in methods_of(records):
        pairs = [(r.scores["unet"], r.scores[m]) for r in records if m in r.scores and "unet" in r.scores]
        b, c = (np.array([p[i] for p in pairs]) for i in (0, 1)) if pairs else (np.array([]), np.array([]))
        s = compare_settings(b, c)
        raw[m] = s
        rows.append([m, str(s["n"]), f3(s["mean_baseline"]), f3(s["mean_candidate"]),
                     _gain(s), fp(s["t_test_p"], s["n"]), fp(s["wilcoxon_p"], s["n"]),
                     fp(s["wilcoxon_greater_p"], s["n"]),
                     NA if math.isnan(s["wilcoxon_z"]) else f"{s['wilcoxon_z']:.2f}",
                     f"{s['improved']}/{s['n']}" + ("" if not s["n"] else f" ({s['improved_fraction']:.0%})")])
    return Table("statistics", "Section V-C: each method against the U-Net over the settings",
                 ["method", "settings", "U-Net", "method Dice", "mean gain (95% CI)", "t-test p",
                  "Wilcoxon p", "Wilcoxon p (gain > 0)", "Z (gain > 0)", "improved"], rows,
                 "Pairs: one per setting (run), the mean per-case Dice of the U-Net and of the method. "
                 "Paired t-test two-sided; Wilcoxon signed-rank two-sided and one-sided (scipy, exact "
                 "for small n); Z: normal approximation of the one-sided test (the paper's Z). n/a: "
                 f"fewer than two settings or all gains zero (then the table '{RUN_TESTS_TITLE}' "
                 f"pairs the cases of each run). {CAUTION_NOTE}"), raw


RUN_TESTS_TITLE = "Paired tests within each run"
CAUTION_NOTE = ("'caution: n=... < 5': a p-value of fewer than five pairs says little (the exact "
                "two-sided Wilcoxon p of n pairs cannot go below 2/2^n: 0.5 for n = 2).")


def _gain(s: dict) -> str:
    lo, hi = s["gain_ci95"]
    return f"{f3(s['mean_gain'])} ({f3(lo)}; {f3(hi)})"


def across_settings_available(raw: dict) -> bool:
    """Whether every method of the Section V-C table has two settings or more."""
    return all(s["n"] >= 2 for s in raw.values())


def run_tests_table(records) -> tuple[Table, dict]:
    """Each run's own paired per-case tests, U-Net against each method, on the split of the
    report: over the case means (all classes) and per class. ``raw[run][method][class]`` are
    the :func:`~iac_tf.evaluation.stats.compare_paired` numbers."""
    rows, raw = [], {}
    for r in records:
        if "unet" not in r.case_scores:
            continue
        per_class = r.class_scores.get(r.split)
        for m in r.methods:
            parts = [("all classes", r.case_scores["unet"], r.case_scores[m])]
            if per_class is not None and m in per_class.dice and "unet" in per_class.dice:
                parts += [(cls, per_class.dice["unet"][:, k], per_class.dice[m][:, k])
                          for k, cls in enumerate(per_class.classes)]
            for cls, b, c in parts:
                s = compare_paired(b, c)
                raw.setdefault(r.name, {}).setdefault(m, {})[cls] = s
                n = s["n"]
                rows.append([r.name, r.split, m, cls, str(n), f3(s["mean_baseline"]),
                             f3(s["mean_candidate"]), _gain(s), fp(s["t_test_p"], n),
                             fp(s["wilcoxon_p"], n), fp(s["wilcoxon_greater_p"], n),
                             NA if not n else f"{s['improved_fraction']:.0%}"])
    return Table("run_tests", f"{RUN_TESTS_TITLE}: U-Net against each method, case by case",
                 ["run", "split", "method", "class", "cases", "U-Net Dice", "method Dice",
                  "mean gain (95% CI)", "t-test p", "Wilcoxon p", "Wilcoxon p (gain > 0)",
                  "cases improved"], rows,
                 "Shown because the statistics over the settings need two settings or more per "
                 "method. Pairs: the cases of one run, the U-Net's and the method's Dice of each "
                 "case ('all classes': the case's mean over the classes present; a class: that "
                 "class's Dice, cases where it is absent from both label and prediction left out). "
                 "Paired t-test two-sided, Wilcoxon signed-rank two- and one-sided (scipy.stats). "
                 "These pair cases, not settings: they say whether the method beats the U-Net on "
                 f"this run's data, not across datasets and backbones. {CAUTION_NOTE}"), raw


def per_class_table(records) -> Table:
    """Mean Dice and HD95 per class, split and model of every run (the U-Net first, then the
    methods; the genotype-epoch sweep's models are in Table VI)."""
    models = ["unet"] + methods_of(records)
    header = ["run", "split", "class", "cases"] + [
        f"{m} {what}" for m in models for what in ("Dice", "HD95 mm")]
    rows, units = [], set()
    for r in records:
        for split, cs in r.class_scores.items():
            units.add((split, cs.dice_unit))
            for k, cls in enumerate(cs.classes):
                row = [r.name, split, cls, str(len(cs.cases))]
                for m in models:
                    row += [f3(_mean(cs.dice[m][:, k])) if m in cs.dice else NA,
                            mm(_mean(cs.hd95[m][:, k])) if m in cs.hd95 else NA]
                rows.append(row)
    what = "; ".join(f"{split}: Dice of {'whole volumes' if unit == 'volumes' else 'the 2D slices'}"
                     for split, unit in sorted(units))
    return Table("per_class", "Dice and HD95 per class", header, rows,
                 "Mean over the split's cases of each case's Dice and 95th-percentile Hausdorff "
                 "distance (mm, whole volumes on their own grid); a case where the class is absent "
                 "from both label and prediction is left out, a class missed or predicted where "
                 "there is none scores Dice 0 and HD95 the volume's diagonal. "
                 + (f"{what}. " if what else "") + "n/a: the run has no such score (HD95: no "
                 f"volumetric scores, e.g. npz data). Read from each run's {EVALUATION}/ "
                 f"({DICE_PER_CASE}, {VOLUMETRIC_CSV}) and {EVALUATION}/{TEST_SPLIT}/.")


def runs_table(records, current_version: str) -> Table:
    rows = []
    for r in records:
        ver = r.version + ("" if r.version in (current_version, "not recorded") or not r.status.exists
                           else "  (other code version)")
        rows.append([r.name, r.dataset, r.backbone, r.status.state, ", ".join(r.status.missing) or "-",
                     ver, r.machine, str(r.run_dir)])
    return Table("runs", "Runs", ["run", "dataset", "backbone", "state", "missing", "code version",
                                  "machine", "folder"], rows,
                 f"Report made with code version {current_version}. Partial runs are listed with what "
                 "they lack and contribute only the parts they have; runs not found are listed as "
                 "'not started'. Machine: CPU, widest vector instruction set and oneDNN state of "
                 f"{MACHINE_RECORD}; training follows the floating-point order, which differs between "
                 "kinds of machine.")


def all_tables(records, current_version: str) -> tuple[list[Table], dict]:
    """The Runs table lists every record; the others use the runs that exist (partial ones
    contribute the parts they have). Two runs of one setting are refused
    (:func:`check_one_run_per_setting`). When a method has fewer than two settings, the
    tables end with each run's own paired tests (:func:`run_tests_table`, in ``raw["per_run"]``)."""
    check_one_run_per_setting(records)
    present = [r for r in records if r.status.exists]
    stats, raw = statistics_table(present)
    tables = [runs_table(records, current_version), table_i(present), table_ii(present),
              table_iii(present), table_iv(present), table_v(present), table_vi(present),
              per_class_table(present), stats]
    if not across_settings_available(raw):
        own, raw_own = run_tests_table(present)
        tables.append(own)
        raw["per_run"] = raw_own
    return tables, raw
