"""Per-case Dice from exact confusion counts, the paired tests against scipy, and the tables of
a pair of models.

Covers: iac_tf/evaluation/metrics.py, iac_tf/evaluation/stats.py, iac_tf/evaluation/report.py
"""

import math

import numpy as np
import pytest
from scipy import stats

from iac_tf.evaluation import case_dice, compare_paired, confusion_counts, dice_from_counts
from iac_tf.evaluation.report import evaluate_pair
from tests.evaluation.helpers import ConstModel, half_masks


def test_confusion_counts_and_dice_exact():
    gt = np.zeros((2, 4, 4, 2), bool)
    pr = np.zeros_like(gt)
    gt[0, :2, :2, 0] = True           # 4 px
    pr[0, :2, :3, 0] = True           # 6 px, 4 overlap
    pr[1, 0, 0, 1] = True             # class 1 absent in gt, one false positive
    tp, fp, fn = confusion_counts(gt, pr)
    assert tp.tolist() == [4, 0] and fp.tolist() == [2, 1] and fn.tolist() == [0, 0]
    d = dice_from_counts(tp, fp, fn)
    assert d[0] == pytest.approx(8 / 10) and d[1] == 0.0
    assert math.isnan(dice_from_counts(0, 0, 0))


def test_case_dice_groups_slices_by_case():
    masks = np.zeros((3, 2, 2, 1), np.float32)
    masks[0, 0, 0] = masks[1, 0, 0] = 1
    probs = np.zeros_like(masks)
    probs[0, 0, 0] = 0.9
    out = case_dice(masks, probs, ["a", "a", "b"])
    assert list(out) == ["a", "b"]
    assert out["a"][0] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert math.isnan(out["b"][0])
    with pytest.raises(ValueError, match="case ids"):
        case_dice(masks, probs, ["a"])


def test_compare_paired_matches_scipy_and_drops_nan():
    rng = np.random.default_rng(0)
    b = rng.random(12)
    c = b + rng.normal(0.05, 0.03, 12)
    b_nan = np.append(b, np.nan)
    c_nan = np.append(c, 0.5)
    s = compare_paired(b_nan, c_nan)
    assert s["n"] == 12
    assert s["t_test_p"] == pytest.approx(stats.ttest_rel(c, b).pvalue)
    assert s["wilcoxon_p"] == pytest.approx(stats.wilcoxon(c, b).pvalue)
    assert s["wilcoxon_greater_p"] == pytest.approx(stats.wilcoxon(c, b, alternative="greater").pvalue)
    d = c - b
    half = stats.t.ppf(0.975, 11) * d.std(ddof=1) / np.sqrt(12)
    assert s["gain_ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    single = compare_paired([0.5], [0.6])
    assert single["n"] == 1 and math.isnan(single["t_test_p"])


def test_evaluate_pair_writes_tables(tmp_path):
    images, masks = half_masks()
    report = evaluate_pair(ConstModel(0.0), ConstModel(1.0), images, masks, ["p1", "p1", "p2", "p2"],
                           ["lesion"], tmp_path)
    assert report["overall"]["mean_baseline"] == 0.0
    assert report["overall"]["mean_candidate"] == pytest.approx(2 * 16 / (16 + 32))
    for name in ("dice_per_case.csv", "stats.json", "dice_table.md", "dice_paired.png"):
        assert (tmp_path / name).is_file()
