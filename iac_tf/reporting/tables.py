"""The paper's tables (Section V) built from run records.

A setting is one run (a dataset x backbone pair); its score for a model is the mean over val_dt
cases of the per-case Dice (:class:`~iac_tf.reporting.collect.RunRecord`). Tables II, IV, V and
the Section V-C statistics aggregate settings; Table VI lists each setting's genotype epochs.

One run per setting: every table counts each setting once, so two runs of one dataset x backbone
pair are refused (:func:`check_one_run_per_setting`, called by :func:`all_tables`) with an
error naming both run folders, before any table is built.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from iac_tf.errors import UserError
from iac_tf.evaluation.across_settings import compare_settings, mean_std
from iac_tf.evaluation.stats import mean_ci
from iac_tf.reporting import paper
from iac_tf.reporting.collect import RunRecord

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


def fp(x) -> str:
    return NA if x is None or math.isnan(x) else f"{x:.2g}"


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
    ds = datasets_of(records)
    header = ["backbone"] + [f"{d} {part}" for d in ds for part in ("train_dt", "val_dt")]
    rows = []
    for bb in backbones_of(records):
        row = [bb]
        for d in ds:
            rec = [r for r in records if r.dataset == d and r.backbone == bb]  # one at most
            row += [f3(rec[0].train_dice), f3(rec[0].scores.get("unet", math.nan))] if rec else ["", ""]
        rows.append(row)
    return Table("table_i", "Table I: Dice of the U-Nets (Stage I)", header, rows,
                 "train_dt: Stage I's slice-level soft Dice on train_dt at its best epoch (history.csv); val_dt: "
                 "mean per-case Dice on the evaluation split (the U-Net column of the evaluation). "
                 "An empty cell: no run of that setting.")


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
                 "Our hours: Stage II's search_time.json plus the sum of Stage III epoch times "
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
        lo, hi = s["gain_ci95"]
        rows.append([m, str(s["n"]), f3(s["mean_baseline"]), f3(s["mean_candidate"]),
                     f"{f3(s['mean_gain'])} ({f3(lo)}; {f3(hi)})", fp(s["t_test_p"]), fp(s["wilcoxon_p"]),
                     fp(s["wilcoxon_greater_p"]),
                     NA if math.isnan(s["wilcoxon_z"]) else f"{s['wilcoxon_z']:.2f}",
                     f"{s['improved']}/{s['n']}" + ("" if not s["n"] else f" ({s['improved_fraction']:.0%})")])
    return Table("statistics", "Section V-C: each method against the U-Net over the settings",
                 ["method", "settings", "U-Net", "method Dice", "mean gain (95% CI)", "t-test p",
                  "Wilcoxon p", "Wilcoxon p (gain > 0)", "Z (gain > 0)", "improved"], rows,
                 "Pairs: one per setting (run), the mean per-case Dice of the U-Net and of the method. "
                 "Paired t-test two-sided; Wilcoxon signed-rank two-sided and one-sided (scipy, exact "
                 "for small n); Z: normal approximation of the one-sided test (the paper's Z). n/a: "
                 "fewer than two settings or all gains zero."), raw


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
                 "machine.json; training follows the floating-point order, which differs between "
                 "kinds of machine.")


def all_tables(records, current_version: str) -> tuple[list[Table], dict]:
    """The Runs table lists every record; the others use the runs that exist (partial ones
    contribute the parts they have). Two runs of one setting are refused
    (:func:`check_one_run_per_setting`)."""
    check_one_run_per_setting(records)
    present = [r for r in records if r.status.exists]
    stats, raw = statistics_table(present)
    return [runs_table(records, current_version), table_i(present), table_ii(present),
            table_iii(present), table_iv(present), table_v(present), table_vi(present), stats], raw
