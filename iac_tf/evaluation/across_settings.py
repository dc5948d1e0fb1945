"""Statistics over experimental settings (paper Section V-C).

Section V-C pairs the 32 dataset x backbone *settings*, not the cases of one run: each setting
contributes one baseline score (the U-Net's mean Dice) and one candidate score (the improved
U-Net's). Over these pairs it reports the mean gain (0.063), the paired t-test (p ~ 0.0008), the
two-sided Wilcoxon signed-rank test (p < 0.001), the one-sided Wilcoxon test with its normal
statistic Z (Z ~ 3.51, p < 0.001) and the share of settings improved (72%).

The Wilcoxon statistic is written out in NumPy (ranks of |d| with average ranks for ties, zero
differences dropped as in Wilcoxon's original method, normal approximation with the tie
correction and no continuity correction); ``tests/evaluation`` checks it against
``scipy.stats.wilcoxon`` called directly.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from iac_tf.evaluation.stats import mean_ci, paired


@dataclasses.dataclass(frozen=True)
class SignedRank:
    """The Wilcoxon signed-rank test of differences ``d`` (zeros dropped).

    Attributes:
        n: number of non-zero differences.
        t_plus: sum of the ranks of the positive differences (T+).
        z: (T+ - n(n+1)/4) / sigma, sigma with the tie correction (normal approximation).
        p_greater: one-sided p of the normal approximation (H1: median difference > 0).
        p_two_sided: two-sided p of the normal approximation.
    """

    n: int
    t_plus: float
    z: float
    p_greater: float
    p_two_sided: float


def signed_rank(d) -> SignedRank:
    """Wilcoxon signed-rank statistic T+ and its normal-approximation Z for differences ``d``."""
    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[~np.isnan(d)]
    d = d[d != 0]  # Wilcoxon's zero_method: zero differences carry no sign
    n = d.size
    if n == 0:
        return SignedRank(0, math.nan, math.nan, math.nan, math.nan)
    ranks = stats.rankdata(np.abs(d))  # average ranks for ties
    t_plus = float(ranks[d > 0].sum())
    mean = n * (n + 1) / 4.0
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(counts**3 - counts)) / 48.0
    if var <= 0:
        return SignedRank(n, t_plus, math.nan, math.nan, math.nan)
    z = (t_plus - mean) / math.sqrt(var)
    return SignedRank(n, t_plus, z, float(stats.norm.sf(z)), float(2 * stats.norm.sf(abs(z))))


def compare_settings(baseline, candidate) -> dict:
    """Section V-C over paired per-setting scores (same settings, same order; NaN pairs dropped).

    Returns ``n``, ``mean_baseline``, ``mean_candidate``, ``mean_gain`` with ``gain_ci95``
    (t-based), ``t_test_t`` / ``t_test_p`` (paired, two-sided), ``wilcoxon_p`` (two-sided, scipy's
    default method: exact for small n without ties), ``wilcoxon_greater_p`` (one-sided, same
    method), ``wilcoxon_t_plus`` and ``wilcoxon_z`` / ``wilcoxon_z_p`` (one-sided normal
    approximation, the statistic the paper quotes), ``improved`` / ``unchanged`` / ``worse``
    counts and ``improved_fraction``. Tests that cannot run give NaN.
    """
    b, c, d = paired(baseline, candidate)
    gain, lo, hi = mean_ci(d)
    rank = signed_rank(d)
    out = {
        "n": int(d.size),
        "mean_baseline": float(b.mean()) if b.size else math.nan,
        "mean_candidate": float(c.mean()) if c.size else math.nan,
        "mean_gain": gain, "gain_ci95": [lo, hi],
        "t_test_t": math.nan, "t_test_p": math.nan,
        "wilcoxon_p": math.nan, "wilcoxon_greater_p": math.nan,
        "wilcoxon_t_plus": math.nan, "wilcoxon_z": math.nan, "wilcoxon_z_p": math.nan,
        "improved": int(np.sum(d > 0)), "unchanged": int(np.sum(d == 0)), "worse": int(np.sum(d < 0)),
        "improved_fraction": float(np.mean(d > 0)) if d.size else math.nan,
    }
    if d.size >= 2 and np.any(d != 0):
        t = stats.ttest_rel(c, b)
        out["t_test_t"], out["t_test_p"] = float(t.statistic), float(t.pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(c, b).pvalue)
        out["wilcoxon_greater_p"] = float(stats.wilcoxon(c, b, alternative="greater").pvalue)
        out["wilcoxon_t_plus"], out["wilcoxon_z"], out["wilcoxon_z_p"] = rank.t_plus, rank.z, rank.p_greater
    return out


def mean_std(values) -> tuple[float, float, float]:
    """Mean, variance and standard deviation (ddof=1) of ``values`` (NaNs dropped); Table II's
    "mean (variance)" cells."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if v.size < 2:
        return float(v.mean()), math.nan, math.nan
    var = float(v.var(ddof=1))
    return float(v.mean()), var, math.sqrt(var)
