"""Evaluate a baseline and an improved model on one split: per-case Dice table (CSV), paired
statistics (JSON + Markdown) and a plot."""

from __future__ import annotations

import csv
import io
import math
import pathlib

import numpy as np

from iac_tf.evaluation.metrics import case_dice
from iac_tf.evaluation.plots import plot_paired_dice
from iac_tf.evaluation.stats import compare_paired
from iac_tf.files import atomic_write_json, atomic_write_text


def predict(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def evaluate_pair(baseline, candidate, images, masks, case_ids, class_names, out_dir,
                  names=("baseline", "iac"), batch_size: int = 32) -> dict:
    """Score both models per case and class, compare them, write the reports, return the stats."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for name, model in zip(names, (baseline, candidate)):
        scores[name] = case_dice(masks, predict(model, images, batch_size), case_ids)
    cases = list(scores[names[0]])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["case", "class"] + list(names) + ["gain"])
    for case in cases:
        for k, cls in enumerate(class_names):
            b, c = scores[names[0]][case][k], scores[names[1]][case][k]
            writer.writerow([case, cls, _f(b), _f(c), _f(c - b)])
    atomic_write_text(out_dir / "dice_per_case.csv", buf.getvalue())

    report = {"split_cases": len(cases), "classes": list(class_names), "per_class": {}}
    for k, cls in enumerate(class_names):
        b = [scores[names[0]][case][k] for case in cases]
        c = [scores[names[1]][case][k] for case in cases]
        report["per_class"][cls] = compare_paired(b, c)
    b_all = [_case_mean(scores[names[0]][case]) for case in cases]
    c_all = [_case_mean(scores[names[1]][case]) for case in cases]
    report["overall"] = compare_paired(b_all, c_all)
    atomic_write_json(out_dir / "stats.json", report)
    atomic_write_text(out_dir / "dice_table.md", markdown_table(report, names))
    plot_paired_dice(b_all, c_all, out_dir / "dice_paired.png", labels=names)
    return report


def markdown_table(report: dict, names=("baseline", "iac")) -> str:
    lines = [
        f"| class | n | {names[0]} | {names[1]} | gain (95% CI) | t-test p | Wilcoxon p | Wilcoxon p (gain>0) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = list(report["per_class"].items()) + [("overall", report["overall"])]
    for cls, s in rows:
        lo, hi = s["gain_ci95"]
        lines.append(
            f"| {cls} | {s['n']} | {_f(s['mean_baseline'])} | {_f(s['mean_candidate'])} | "
            f"{_f(s['mean_gain'])} ({_f(lo)}; {_f(hi)}) | {_f(s['t_test_p'])} | {_f(s['wilcoxon_p'])} | "
            f"{_f(s['wilcoxon_greater_p'])} |"
        )
    return "\n".join(lines) + "\n"


def _case_mean(per_class: np.ndarray) -> float:
    """Mean Dice over the classes present in a case (NaN if none is)."""
    return float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan")


def _f(x) -> str:
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.4f}"
