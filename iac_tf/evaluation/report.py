"""Evaluate the U-Net and N improved models on one split: per-case Dice table (CSV), paired
statistics of each model against the U-Net (JSON + Markdown) and plots.

The Markdown table names the split scored and the split that selected each stage's best epoch
(``val_dt``): scores on ``val_dt`` are in-sample, scores on ``test_dt`` are not. Every output
also names the decision rule that turned probabilities into the scored masks
(:class:`iac_tf.labels.LabelRule`: ``labels``, the label map ``iac predict`` writes, or
``paper_channels``, each channel alone).

``evaluation/`` holds (see `iac_tf.run_layout`):
  dice_per_case.csv   columns ``split, metric, case, class, unet, <method>...`` (one row per
                      case and class; ``metric``: the rule, ``labels`` or ``paper_channels``)
  stats.json          ``split``, ``rule`` (``LabelRule.record()``: metric, label mode,
                      description); ``methods[<method>]`` = ``{per_class, overall}``, each the paired comparison
                      with the U-Net (`compare_paired`: mean gain with 95% CI, paired t-test,
                      Wilcoxon two- and one-sided); ``mean_dice`` per model; ``per_class`` /
                      ``overall`` repeat the first method's (the run's ``iac``) statistics;
                      ``pairs["<candidate>_vs_<reference>"]`` extra comparisons between two
                      methods (e.g. ``iac_vs_unet_continued``, the budget-matched baseline)
  dice_table.md       mean Dice per class, one column per model; then the statistics per method
  dice_paired.png     per-case Dice, U-Net vs the first method; dice_methods.png all models

``iac run`` / ``iac evaluate`` (:mod:`iac_tf.pipeline.evaluation`) also write ``evaluation/test_dt/``
when the run has a test split: the same ``dice_per_case.csv``, ``stats.json``,
``dice_table.md`` and plots, of whole-volume Dice (:func:`compare_scores`), and
``dice_table.md`` of ``evaluation/`` gets a ``test_dt`` section (:func:`volume_section`).
"""

from __future__ import annotations

import csv
import io
import math
import pathlib

import numpy as np

from iac_tf.config.data import TEST_SPLIT
from iac_tf.evaluation.metrics import case_dice
from iac_tf.evaluation.plots import plot_dice_per_method, plot_paired_dice
from iac_tf.evaluation.stats import caution, compare_paired
from iac_tf.files import atomic_write_json, atomic_write_text
from iac_tf.labels import LabelRule
from iac_tf.run_layout import DICE_METHODS_PLOT, DICE_PAIRED_PLOT, DICE_PER_CASE, DICE_TABLE, STATS

#: Columns of ``dice_per_case.csv`` that are not models.
CSV_KEYS = ("split", "metric", "case", "class")


def predict(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def case_scores(model, images, masks, case_ids, batch_size: int = 32,
                rule: LabelRule | None = None) -> dict:
    """``{case: Dice per class}`` of one model on slices (NaN: class absent from both) under
    the decision rule ``rule``: the scores of the Dice table (:func:`evaluate_models`)."""
    return case_dice(masks, predict(model, images, batch_size), case_ids, rule)


def mean_dice(scores: dict) -> float:
    """The table's mean Dice of one model from its :func:`case_scores`: the mean over cases of
    each case's mean over the classes present in it."""
    return _nanmean([_case_mean(per_class) for per_class in scores.values()])


def evaluate_models(models: dict, images, masks, case_ids, class_names, out_dir,
                    baseline: str = "unet", batch_size: int = 32, pairs=(),
                    split: str | None = None, selected_on: str | None = None,
                    rule: LabelRule | None = None) -> dict:
    """Score every model per case and class and compare each with ``models[baseline]``.

    Args:
        models: name -> model (anything with ``predict``), the baseline first or anywhere; the
            other models keep their order as the table's columns.
        baseline: the name of the reference model (the trained U-Net).
        pairs: extra ``(reference, candidate)`` comparisons between two of the models (pairs
            naming a model not in ``models`` are left out).
        split, selected_on: the split scored and the split that selected the best epochs,
            named at the top of ``dice_table.md`` (see :func:`markdown_table`).
        rule: the decision rule the hard Dice scores (``None``: every channel on its own,
            :func:`iac_tf.evaluation.metrics.case_dice`), named in every output.
    Returns the ``stats.json`` content.
    """
    if baseline not in models or len(models) < 2:
        raise ValueError(f"evaluate_models needs {baseline!r} and at least one other model, got {list(models)}")
    names = [baseline] + [n for n in models if n != baseline]
    if rule is None:
        rule = LabelRule.for_channels(len(class_names), "paper_channels")
    scores = {name: case_scores(models[name], images, masks, case_ids, batch_size, rule)
              for name in names}
    return compare_scores(scores, class_names, out_dir, baseline, pairs, split=split,
                          selected_on=selected_on, rule=rule)


def compare_scores(scores: dict, class_names, out_dir, baseline: str = "unet", pairs=(),
                   split: str | None = None, selected_on: str | None = None,
                   unit: str = "slices", plots: bool = True, extra: dict | None = None,
                   rule: LabelRule | None = None) -> dict:
    """:func:`evaluate_models` from scores already computed: ``scores[model][case]`` is the
    Dice per class (NaN: class absent from both). Writes ``dice_per_case.csv``, ``stats.json``
    (its content plus ``extra``), ``dice_table.md`` and, with ``plots``, the two figures to
    ``out_dir``; ``unit`` (``slices`` or ``volumes``) says in the table what was scored,
    ``rule`` (``None``: every channel on its own) how the masks were made."""
    if rule is None:
        rule = LabelRule.for_channels(len(class_names), "paper_channels")
    if baseline not in scores or len(scores) < 2:
        raise ValueError(f"compare_scores needs {baseline!r} and at least one other model, got {list(scores)}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [baseline] + [n for n in scores if n != baseline]
    methods = names[1:]
    cases = list(scores[baseline])

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(CSV_KEYS) + names)
    for case in cases:
        for k, cls in enumerate(class_names):
            writer.writerow([split or "", rule.metric, case, cls]
                            + [_f(scores[n][case][k]) for n in names])
    atomic_write_text(out_dir / DICE_PER_CASE, buf.getvalue())

    per_case = {n: [_case_mean(scores[n][case]) for case in cases] for n in names}
    report = {"split": split, "selected_on": selected_on, "rule": rule.record(),
              "split_cases": len(cases), "classes": list(class_names), "baseline": baseline,
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
    if extra:
        report.update(extra)
    atomic_write_json(out_dir / STATS, report)
    atomic_write_text(out_dir / DICE_TABLE,
                      markdown_table(report, split=split, selected_on=selected_on, unit=unit))
    if plots:
        title = "Dice per case" + (f", {split} ({unit})" if split else "")
        plot_paired_dice(per_case[baseline], per_case[methods[0]], out_dir / DICE_PAIRED_PLOT,
                         labels=(baseline, methods[0]), title=title)
        plot_dice_per_method({n: per_case[n] for n in names}, out_dir / DICE_METHODS_PLOT,
                             title=title)
    return report


def evaluate_pair(baseline, candidate, images, masks, case_ids, class_names, out_dir,
                  names=("baseline", "iac"), batch_size: int = 32) -> dict:
    """`evaluate_models` with two models."""
    return evaluate_models({names[0]: baseline, names[1]: candidate}, images, masks, case_ids,
                           class_names, out_dir, baseline=names[0], batch_size=batch_size)


#: What a table scored, per ``unit`` of :func:`compare_scores`.
UNITS = {"slices": "per-case Dice of the cached 2D slices",
         "volumes": "per-case Dice of whole volumes in their original space"}


def rule_line(rule: dict | None) -> str:
    """``Decision rule: `labels` (one label per voxel, ...).`` from ``stats.json``'s ``rule``."""
    if not rule:
        return "Decision rule: not recorded (each output channel on its own)."
    text = rule.get("description", "")
    metric, _, how = text.partition(": ")
    return f"Decision rule: `{rule.get('metric', metric)}` ({how or text})."


def split_header(split: str, selected_on: str, n_cases: int, unit: str = "slices") -> str:
    """One line naming the split that selected the best epochs and the split scored, e.g.
    ``Best epochs selected on: `val_dt`. Scored on: `test_dt` (12 cases; ...). Held out: ...``."""
    from_split = f"Best epochs selected on: `{selected_on}`."
    scored = f"Scored on: `{split}` ({n_cases} cases; {UNITS.get(unit, unit)})."
    if split == selected_on:
        note = " In-sample: the same split selected the epochs."
    elif split == TEST_SPLIT:
        note = " Held out: nothing trains or selects on it."
    else:
        note = ""
    return f"{from_split} {scored}{note}"


def markdown_table(report: dict, split: str | None = None, selected_on: str | None = None,
                   unit: str = "slices") -> str:
    """Mean Dice per class (one column per model), then each method's statistics vs the U-Net;
    with ``split`` and ``selected_on`` a first line names the split scored and the split that
    selected the best epochs (:func:`split_header`)."""
    head = ([split_header(split, selected_on, report["split_cases"], unit), ""]
            if split and selected_on else [])
    head += [rule_line(report.get("rule")), ""]
    base = report["baseline"]
    methods = list(report["methods"])
    first = report["methods"][methods[0]]
    rows = list(first["per_class"]) + ["overall"]

    def stats_of(m, cls):
        entry = report["methods"][m]
        return entry["overall"] if cls == "overall" else entry["per_class"][cls]

    lines = head + [f"| class | n | {base} | " + " | ".join(methods) + " |",
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
                         + _p_cells(s) + " |")
    for entry in report.get("pairs", {}).values():
        ref, cand = entry["reference"], entry["candidate"]
        lines += ["", f"Paired comparison of `{cand}` with `{ref}` (gain = {cand} - {ref}):", "",
                  "| class | n | " + ref + " | " + cand + " | gain (95% CI) | t-test p | Wilcoxon p | "
                  "Wilcoxon p (gain>0) |", "|---|---|---|---|---|---|---|---|"]
        for cls in rows:
            s = entry["overall"] if cls == "overall" else entry["per_class"][cls]
            lo, hi = s["gain_ci95"]
            lines.append(f"| {cls} | {s['n']} | {_f(s['mean_baseline'])} | {_f(s['mean_candidate'])} | "
                         f"{_f(s['mean_gain'])} ({_f(lo)}; {_f(hi)}) | " + _p_cells(s) + " |")
    return "\n".join(lines) + "\n"


def hd95_table(summary: dict) -> str:
    """Mean HD95 in mm per class (one column per model) of a volumetric summary
    (``{model: {class: summary}}``, :func:`iac_tf.evaluation.volumetric.summarise`); ``n`` is
    the cases where the class is in the label or the prediction."""
    names = list(summary)
    classes = list(summary[names[0]])
    lines = ["| class | n | " + " | ".join(f"{n} HD95 mm" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for cls in classes:
        lines.append(f"| {cls} | {summary[names[0]][cls]['n']} | "
                     + " | ".join(_mm(summary[n][cls]["hd95_mm_mean"]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def volume_section(report: dict, summary: dict, split: str, selected_on: str) -> str:
    """The Markdown section of a split scored on whole volumes (``test_dt``): a heading, the
    line naming both splits, the Dice table with its statistics (:func:`markdown_table` of the
    ``stats.json`` of :func:`compare_scores`) and the mean HD95 per class and model."""
    return (f"## {split}\n\n" + markdown_table(report, split, selected_on, unit="volumes")
            + "\nHD95 (mm), mean over the cases with the class in the label or the "
            "prediction:\n\n" + hd95_table(summary))


def _p_cells(s: dict) -> str:
    """The three p-values of a comparison as table cells, each with the caution of
    :func:`~iac_tf.evaluation.stats.caution` when there are few pairs."""
    return " | ".join(_f(s[k]) + ("" if math.isnan(float(s[k])) else caution(s["n"]))
                      for k in ("t_test_p", "wilcoxon_p", "wilcoxon_greater_p"))


def _mm(x) -> str:
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.2f}"


def _case_mean(per_class: np.ndarray) -> float:
    """Mean Dice over the classes present in a case (NaN if none is)."""
    return float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan")


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")


def _f(x) -> str:
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.4f}"
