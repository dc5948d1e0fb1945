"""Section V-C statistics over settings against scipy called directly on fixed arrays.

Covers: iac_tf/reporting/paper.py
"""

import math

import numpy as np
import pytest
from scipy import stats

from iac_tf.evaluation.across_settings import compare_settings, mean_std, signed_rank

# 12 fixed settings: ties in |d| (0.02 twice, 0.05 three times), one zero difference, both signs.
BASE = np.array([0.80, 0.55, 0.40, 0.91, 0.30, 0.62, 0.70, 0.45, 0.85, 0.50, 0.33, 0.77])
CAND = np.array([0.82, 0.60, 0.45, 0.89, 0.35, 0.62, 0.78, 0.40, 0.88, 0.61, 0.41, 0.79])


def test_signed_rank_z_matches_scipy_normal_approximation():
    d = CAND - BASE
    ours = signed_rank(d)
    ref = stats.wilcoxon(CAND, BASE, alternative="greater", method="approx")
    assert ours.n == 11  # the zero difference is dropped (zero_method="wilcox")
    assert ours.t_plus == pytest.approx(float(ref.statistic), abs=1e-12)
    assert ours.z == pytest.approx(float(ref.zstatistic), rel=1e-12)
    assert ours.p_greater == pytest.approx(float(ref.pvalue), rel=1e-12)
    two = stats.wilcoxon(CAND, BASE, alternative="two-sided", method="approx")
    assert ours.p_two_sided == pytest.approx(float(two.pvalue), rel=1e-12)


def test_signed_rank_z_by_hand_without_ties():
    d = np.array([1.0, 2.0, -3.0, 4.0])  # ranks 1, 2, 3, 4; T+ = 7; mean 5; var 4*5*9/24 = 7.5
    r = signed_rank(d)
    assert r.t_plus == 7.0
    assert r.z == pytest.approx((7 - 5) / math.sqrt(7.5), rel=1e-12)


def test_compare_settings_matches_scipy():
    s = compare_settings(BASE, CAND)
    d = CAND - BASE
    t = stats.ttest_rel(CAND, BASE)
    assert s["n"] == 12
    assert s["mean_gain"] == pytest.approx(d.mean(), rel=1e-12)
    half = stats.t.ppf(0.975, 11) * d.std(ddof=1) / math.sqrt(12)
    assert s["gain_ci95"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-12)
    assert s["t_test_t"] == pytest.approx(t.statistic, rel=1e-12)
    assert s["t_test_p"] == pytest.approx(t.pvalue, rel=1e-12)
    assert s["wilcoxon_p"] == pytest.approx(stats.wilcoxon(CAND, BASE).pvalue, rel=1e-12)
    assert s["wilcoxon_greater_p"] == pytest.approx(
        stats.wilcoxon(CAND, BASE, alternative="greater").pvalue, rel=1e-12)
    assert s["wilcoxon_z"] == pytest.approx(
        stats.wilcoxon(CAND, BASE, alternative="greater", method="approx").zstatistic, rel=1e-12)
    assert (s["improved"], s["unchanged"], s["worse"]) == (9, 1, 2)
    assert s["improved_fraction"] == pytest.approx(9 / 12)


def test_compare_settings_drops_nan_pairs_and_degenerate_cases():
    s = compare_settings([0.5, np.nan, 0.4], [0.6, 0.7, np.nan])
    assert s["n"] == 1 and math.isnan(s["t_test_p"]) and math.isnan(s["gain_ci95"][0])
    with pytest.raises(ValueError, match="differ in length"):
        compare_settings([0.1, 0.2], [0.1])


def test_mean_std_is_variance_with_ddof_1():
    m, var, sd = mean_std([0.1, 0.3, np.nan, 0.8])
    assert m == pytest.approx(0.4)
    assert var == pytest.approx(np.var([0.1, 0.3, 0.8], ddof=1))
    assert sd == pytest.approx(math.sqrt(var))


def test_paper_table_vi_supports_the_section_v_statements():
    """experiments/paper_numbers.py's numbers: the paper's Table VI through the same functions."""
    from iac_tf.reporting import paper

    _, base, iac = paper.best_epoch_scores()
    s = compare_settings(base, iac)
    assert s["n"] == 32
    assert round(s["mean_gain"], 3) == 0.063
    assert s["t_test_p"] == pytest.approx(0.0008, abs=0.0001)
    assert s["improved"] == 23  # 72%
    assert 3.4 < s["wilcoxon_z"] < 3.5  # the paper says ~3.51 (docs/decisions.md)


def test_paper_numbers_script_prints_ours_next_to_the_papers(capsys):
    import runpy

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    mod = runpy.run_path(str(root / "experiments" / "paper_numbers.py"))
    assert mod["main"]([]) == 0
    out = capsys.readouterr().out
    assert "0.0629 (0.0284; 0.0974)" in out and "paper: 0.063" in out
    assert "3.45 (T+ = 448.5)" in out and "paper: ~3.51" in out
    assert "23/32 = 72%" in out and "20/24 = 83%" in out
    assert "closest: BRATS TR" in out  # Table I's headers vs Table VI's ACDC baselines
