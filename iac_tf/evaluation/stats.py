"""Paired comparison of two models' scores on the same cases (paper Section V-C): mean gain with a
95% confidence interval, paired t-test, two-sided and one-sided Wilcoxon signed-rank tests."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: Fewer pairs than this and a p-value is printed with a caution: with n pairs the exact
#: two-sided Wilcoxon p cannot go below 2 / 2**n (0.5 for n = 2, 0.125 for n = 4).
SMALL_N = 5


def caution(n: int) -> str:
    """The words printed beside a p-value of ``n`` pairs: ``" (caution: n=2 < 5)"`` below
    :data:`SMALL_N`, else nothing."""
    return f" (caution: n={n} < {SMALL_N})" if n < SMALL_N else ""


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t-based confidence interval (NaNs dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def paired(baseline, candidate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired scores as float64 arrays with every pair holding a NaN dropped, and their
    differences ``candidate - baseline``; a length mismatch is an error."""
    b = np.asarray(baseline, dtype=np.float64).ravel()
    c = np.asarray(candidate, dtype=np.float64).ravel()
    if b.shape != c.shape:
        raise ValueError(f"paired scores differ in length: {b.size} vs {c.size}")
    keep = ~(np.isnan(b) | np.isnan(c))
    return b[keep], c[keep], c[keep] - b[keep]


def compare_paired(baseline, candidate) -> dict:
    """Compare paired scores (same cases, same order). Pairs with a NaN on either side are dropped.

    Returns a dict with ``n``, ``mean_baseline``, ``mean_candidate``, ``mean_gain`` (+ 95% CI),
    ``t_test_p`` (two-sided paired t-test), ``wilcoxon_p`` (two-sided), ``wilcoxon_greater_p``
    (one-sided: candidate > baseline) and ``improved_fraction``. Tests that cannot run (fewer than
    two pairs, all differences zero) give NaN.
    """
    b, c, d = paired(baseline, candidate)
    gain, lo, hi = mean_ci(d)
    out = {
        "n": int(d.size),
        "mean_baseline": float(b.mean()) if b.size else math.nan,
        "mean_candidate": float(c.mean()) if c.size else math.nan,
        "mean_gain": gain, "gain_ci95": [lo, hi],
        "improved_fraction": float(np.mean(d > 0)) if d.size else math.nan,
        "t_test_p": math.nan, "wilcoxon_p": math.nan, "wilcoxon_greater_p": math.nan,
    }
    if d.size >= 2 and np.any(d != 0):
        out["t_test_p"] = float(stats.ttest_rel(c, b).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(c, b).pvalue)
        out["wilcoxon_greater_p"] = float(stats.wilcoxon(c, b, alternative="greater").pvalue)
    return out
