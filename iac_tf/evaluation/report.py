"""Evaluate the U-Net and N improved models on one split: per-case Dice table (CSV), paired
statistics of each model against the U-Net (JSON + Markdown) and plots.

``evaluation/`` holds (see `iac_tf.run_layout`):
  dice_per_case.csv   columns ``case, class, unet, <method>...`` (one row per case and class)
  stats.json          ``methods[<method>]`` = ``{per_class, overall}``, each the paired comparison
                      with the U-Net (`compare_paired`: mean gain with 95% CI, paired t-test,
                      Wilcoxon two- and one-sided); ``mean_dice`` per model; ``per_class`` /
                      ``overall`` repeat the first method's (the run's ``iac``) statistics;
                      ``pairs["<candidate>_vs_<reference>"]`` extra comparisons between two
                      methods (e.g. ``iac_vs_unet_continued``, the budget-matched baseline)
  dice_table.md       mean Dice per class, one column per model; then the statistics per method
  dice_paired.png     per-case Dice, U-Net vs the first method; dice_methods.png all models
"""

from __future__ import annotations

import csv
import io
import math
import pathlib

import numpy as np

from iac_tf.evaluation.metrics import case_dice
from iac_tf.evaluation.plots import plot_dice_per_method, plot_paired_dice
from iac_tf.evaluation.stats import compare_paired
from iac_tf.files import atomic_write_json, atomic_write_text


def predict(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def evaluate_models(models: dict, images, masks, case_ids, class_names, out_dir,
                    baseline: str = "unet", batch_size: int = 32, pairs=()) -> dict:
    """Score every model per case and class and compare each with ``models[baseline]``.

    Args:
        models: name -> model (anything with ``predict``), the baseline first or anywhere; the
            other models keep their order as the table's columns.
        baseline: the name of the reference model (the trained U-Net).
        pairs: extra ``(reference, candidate)`` comparisons between two of the models (pairs
            naming a model not in ``models`` are left out).
    Returns the ``stats.json`` content.
    """
    if baseline not in models or len(models) < 2:
        raise ValueError(f"evaluate_models needs {baseline!r} and at least one other model, got {list(models)}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [baseline] + [n for n in models if n != baseline]
    methods = names[1:]
    scores = {name: case_dice(masks, predict(models[name], images, batch_size), case_ids) for name in names}
    cases = list(scores[baseline])

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["case", "class"] + names)
    for case in cases:
        for k, cls in enumerate(class_names):
            writer.writerow([case, cls] + [_f(scores[n][case][k]) for n in names])
    atomic_write_text(out_dir / "dice_per_case.csv", buf.getvalue())

    per_case = {n: [_case_mean(scores[n][case]) for case in cases] for n in names}
    report = {"split_cases": len(cases), "classes": list(class_names), "baseline": baseline,
              "mean_dice": {n: _nanmean(per_case[n]) for n in names}, "methods": {}}
    for m in methods:
        per_class = {}
        for k, cls in enumerate(class_names):
            per_class[cls] = compare_paired([scores[baseline][c][k] for c in cases],
                                            [scores[m][c][k] for c in cases])
        report["methods"][m] = {"per_class": per_class,
                                "overall": compare_paired(per_case[baseline], per_case[m])}
    report["pairs"] = {}
    for ref, cand in pairs:
        if ref in scores and cand in scores:
            report["pairs"][f"{cand}_vs_{ref}"] = {
                "reference": ref, "candidate": cand,
                "per_class": {cls: compare_paired([scores[ref][c][k] for c in cases],
                                                  [scores[cand][c][k] for c in cases])
                              for k, cls in enumerate(class_names)},
                "overall": compare_paired(per_case[ref], per_case[cand])}
    report["per_class"] = report["methods"][methods[0]]["per_class"]
    report["overall"] = report["methods"][methods[0]]["overall"]
    atomic_write_json(out_dir / "stats.json", report)
    atomic_write_text(out_dir / "dice_table.md", markdown_table(report))
    plot_paired_dice(per_case[baseline], per_case[methods[0]], out_dir / "dice_paired.png",
                     labels=(baseline, methods[0]))
    plot_dice_per_method({n: per_case[n] for n in names}, out_dir / "dice_methods.png")
    return report


def evaluate_pair(baseline, candidate, images, masks, case_ids, class_names, out_dir,
                  names=("baseline", "iac"), batch_size: int = 32) -> dict:
    """`evaluate_models` with two models."""
    return evaluate_models({names[0]: baseline, names[1]: candidate}, images, masks, case_ids,
                           class_names, out_dir, baseline=names[0], batch_size=batch_size)


def markdown_table(report: dict) -> str:
    """Mean Dice per class (one column per model), then each method's statistics vs the U-Net."""
    base = report["baseline"]
    methods = list(report["methods"])
    first = report["methods"][methods[0]]
    rows = list(first["per_class"]) + ["overall"]

    def stats_of(m, cls):
        entry = report["methods"][m]
        return entry["overall"] if cls == "overall" else entry["per_class"][cls]

    lines = [f"| class | n | {base} | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for cls in rows:
        s0 = stats_of(methods[0], cls)
        lines.append(f"| {cls} | {s0['n']} | {_f(s0['mean_baseline'])} | "
                     + " | ".join(_f(stats_of(m, cls)["mean_candidate"]) for m in methods) + " |")
    lines += ["", f"Paired comparison with `{base}` (gain = method - {base}; mean over cases):", "",
              "| method | class | n | gain (95% CI) | t-test p | Wilcoxon p | Wilcoxon p (gain>0) |",
              "|---|---|---|---|---|---|---|"]
    for m in methods:
        for cls in rows:
            s = stats_of(m, cls)
            lo, hi = s["gain_ci95"]
            lines.append(f"| {m} | {cls} | {s['n']} | {_f(s['mean_gain'])} ({_f(lo)}; {_f(hi)}) | "
                         f"{_f(s['t_test_p'])} | {_f(s['wilcoxon_p'])} | {_f(s['wilcoxon_greater_p'])} |")
    for entry in report.get("pairs", {}).values():
        ref, cand = entry["reference"], entry["candidate"]
        lines += ["", f"Paired comparison of `{cand}` with `{ref}` (gain = {cand} - {ref}):", "",
                  "| class | n | " + ref + " | " + cand + " | gain (95% CI) | t-test p | Wilcoxon p | "
                  "Wilcoxon p (gain>0) |", "|---|---|---|---|---|---|---|---|"]
        for cls in rows:
            s = entry["overall"] if cls == "overall" else entry["per_class"][cls]
            lo, hi = s["gain_ci95"]
            lines.append(f"| {cls} | {s['n']} | {_f(s['mean_baseline'])} | {_f(s['mean_candidate'])} | "
                         f"{_f(s['mean_gain'])} ({_f(lo)}; {_f(hi)}) | {_f(s['t_test_p'])} | "
                         f"{_f(s['wilcoxon_p'])} | {_f(s['wilcoxon_greater_p'])} |")
    return "\n".join(lines) + "\n"


def _case_mean(per_class: np.ndarray) -> float:
    """Mean Dice over the classes present in a case (NaN if none is)."""
    return float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan")


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")


def _f(x) -> str:
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.4f}"
