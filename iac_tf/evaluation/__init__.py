"""Evaluation: per-case Dice (pure NumPy), tests of significance, tables and plots."""

from iac_tf.evaluation.metrics import case_dice, confusion_counts, dice_from_counts
from iac_tf.evaluation.stats import compare_paired

__all__ = ["case_dice", "confusion_counts", "dice_from_counts", "compare_paired"]
