"""The paper's Table VI through the Section V-C statistics, next to what Section V states.

    python experiments/paper_numbers.py            # text report
    python experiments/paper_numbers.py --json     # the numbers as JSON

The IAC score of a setting is the best of its five genotype epochs (the reading that reproduces
Table IV's IAC column); the fixed-epoch readings are printed too. Consistency checks between the
paper's tables are printed at the end (see docs/decisions.md, "Reporting: the paper's numbers").
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from iac_tf.evaluation.across_settings import compare_settings, mean_std
from iac_tf.reporting import paper


def analyse() -> dict:
    settings, base, iac = paper.best_epoch_scores()
    base, iac = np.array(base), np.array(iac)
    out = {"best_epoch": compare_settings(base, iac)}
    not_acdc = np.array([ds != "ACDC" for ds, _ in settings])
    out["best_epoch_without_acdc"] = compare_settings(base[not_acdc], iac[not_acdc])
    for k, ep in enumerate(paper.GENOTYPE_EPOCHS):
        fixed = [paper.TABLE_VI[ds][bb][k + 1] for ds, bb in settings]
        out[f"epoch_{ep}"] = compare_settings(base, fixed)
    out["table_ii_from_table_vi"] = {}
    for ds in paper.DATASETS + ("AVERAGE",):
        sel = np.ones(len(settings), bool) if ds == "AVERAGE" else np.array([s[0] == ds for s in settings])
        m, var, sd = mean_std(iac[sel] - base[sel])
        out["table_ii_from_table_vi"][ds] = {"mean": m, "variance": var, "std": sd,
                                             "printed": paper.TABLE_II["iac"][ds]}
    out["table_iv_from_table_vi"] = {}
    for ds in paper.DATASETS:
        sel = np.array([s[0] == ds for s in settings])
        out["table_iv_from_table_vi"][ds] = {"baseline": float(base[sel].mean()),
                                            "iac": float(iac[sel].mean()),
                                            "printed": paper.TABLE_IV[ds][:2]}
    out["table_i_vs_table_vi"] = _table_i_columns()
    return out


def _table_i_columns() -> dict:
    """Which printed Table I column equals Table VI's BSLN column of each dataset (max abs diff)."""
    cols = {f"{ds} {part}": [paper.TABLE_I[bb][ds][i] for bb in paper.BACKBONES]
            for ds in paper.DATASETS for i, part in enumerate(("TR", "VAL"))}
    out = {}
    for ds in paper.DATASETS:
        bsln = np.array([paper.TABLE_VI[ds][bb][0] for bb in paper.BACKBONES])
        diffs = {name: float(np.max(np.abs(bsln - np.array(v)))) for name, v in cols.items()}
        best = min(diffs, key=diffs.get)
        out[ds] = {"closest_table_i_column": best, "max_abs_diff": diffs[best],
                   "diff_to_own_val_column": diffs[f"{ds} VAL"]}
    return out


def _line(label: str, ours: str, paper_says: str) -> str:
    return f"  {label:<42} {ours:<26} paper: {paper_says}"


def render(res: dict) -> str:
    s = res["best_epoch"]
    st = paper.STATEMENTS
    lo, hi = s["gain_ci95"]
    lines = [
        "Section V-C over the 32 settings of Table VI (IAC = best genotype epoch per setting)",
        _line("settings", str(s["n"]), "32"),
        _line("mean Dice U-Net -> IAC", f"{s['mean_baseline']:.4f} -> {s['mean_candidate']:.4f}",
              "0.62 -> 0.68 (Table IV, overall)"),
        _line("mean gain (95% CI)", f"{s['mean_gain']:.4f} ({lo:.4f}; {hi:.4f})", f"{st['mean_gain']}"),
        _line("paired t-test p (two-sided)", f"{s['t_test_p']:.2g} (t = {s['t_test_t']:.2f})",
              f"~{st['t_test_p']}"),
        _line("Wilcoxon p (two-sided)", f"{s['wilcoxon_p']:.2g}", st["wilcoxon_p"]),
        _line("Wilcoxon one-sided Z (normal approx.)", f"{s['wilcoxon_z']:.2f} (T+ = {s['wilcoxon_t_plus']:.1f})",
              f"~{st['wilcoxon_z']}"),
        _line("Wilcoxon one-sided p", f"{s['wilcoxon_greater_p']:.2g} (normal: {s['wilcoxon_z_p']:.2g})",
              st["wilcoxon_greater_p"]),
        _line("settings improved", f"{s['improved']}/{s['n']} = {s['improved_fraction']:.0%}",
              f"{st['improved_fraction']:.0%}"),
        _line("settings improved without ACDC",
              f"{res['best_epoch_without_acdc']['improved']}/{res['best_epoch_without_acdc']['n']} = "
              f"{res['best_epoch_without_acdc']['improved_fraction']:.0%}",
              f"{st['improved_fraction_without_acdc']:.0%}"),
        "",
        "One fixed genotype epoch for every setting (what a user without an oracle gets):",
        f"  {'epoch':<8}{'mean gain':>10}{'t-test p':>10}{'Wilc. p':>10}{'Z':>7}{'improved':>10}",
    ]
    for ep in paper.GENOTYPE_EPOCHS:
        r = res[f"epoch_{ep}"]
        lines.append(f"  {ep:<8}{r['mean_gain']:>10.4f}{r['t_test_p']:>10.2g}{r['wilcoxon_p']:>10.2g}"
                     f"{r['wilcoxon_z']:>7.2f}{r['improved_fraction']:>10.0%}")
    lines += ["", "Table II (IAC column) recomputed from Table VI: mean, variance, std of the gain",
              f"  {'dataset':<9}{'mean':>8}{'var':>8}{'std':>8}   printed mean (\"variance\")"]
    for ds, r in res["table_ii_from_table_vi"].items():
        pm, pv = r["printed"]
        lines.append(f"  {ds:<9}{r['mean']:>8.3f}{r['variance']:>8.3f}{r['std']:>8.3f}   {pm:.2f} ({pv:.2f})")
    lines += ["", "Table IV recomputed from Table VI (mean baseline, mean IAC)"]
    for ds, r in res["table_iv_from_table_vi"].items():
        (pb, _, _), (pi, _, _) = r["printed"]
        lines.append(f"  {ds:<9}{r['baseline']:>8.3f}{r['iac']:>8.3f}   printed {pb:.2f} {pi:.2f}")
    lines += ["", "Table I vs Table VI baselines (which printed Table I column equals BSLN)"]
    for ds, r in res["table_i_vs_table_vi"].items():
        lines.append(f"  {ds:<9} closest: {r['closest_table_i_column']:<10} (max |diff| "
                     f"{r['max_abs_diff']:.3f}); vs Table I '{ds} VAL': max |diff| {r['diff_to_own_val_column']:.3f}")
    lines += ["", "Not computable from the paper: the U-Net++ statements (mean gain 0.0315, t-test p ~ 0.0016,",
              "Wilcoxon p ~ 0.002) - the paper prints no per-setting U-Net++ Dice."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    res = analyse()
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
