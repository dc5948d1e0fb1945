"""Does a given U-Net see what it was trained on? Scored on val_dt before Stage II.

A U-Net trained elsewhere (``unet.pretrained``: nnU-Net, MONAI, a Keras tutorial) meets this
tool's preprocessing for the first time in Stage II. If that preprocessing differs from its own
(another intensity normalisation, spacing or zoom, channel order, patch size), the search and
Stage III improve a U-Net that is blind, and the IAC "gain" is a repair of the preprocessing. So
before the search, the U-Net is scored on val_dt with the same function as the val_dt Dice table
(:func:`iac_tf.evaluation.report.case_scores`, :func:`~iac_tf.evaluation.report.mean_dice`), the
score is logged next to the U-Net's own number (``unet.expected_dice``) and written to
``unet_score.json`` (run folder); more than :data:`EXPECTED_DICE_TOLERANCE` below that number is a
warning naming the usual causes.
"""

from __future__ import annotations

import logging

from iac_tf.config.data import SELECTION_SPLIT
from iac_tf.evaluation.report import case_scores, mean_dice
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.files import atomic_write_json
from iac_tf.models import load_unet
from iac_tf.pipeline.common import label_rule, trained_unet_path
from iac_tf.run_layout import RunLayout

log = logging.getLogger("iac_tf.pipeline")

#: A given U-Net scoring more than this (absolute mean Dice) below ``unet.expected_dice`` on
#: val_dt gets a warning. Our choice: differences between a Dice reported on another split or
#: with other post-processing stay well below it, while a preprocessing mismatch usually costs
#: far more (see docs/decisions.md).
EXPECTED_DICE_TOLERANCE = 0.1

#: What to compare when the given U-Net scores far below its own number.
PREPROCESSING_CAUSES = (
    "intensity normalisation (data.ct_window, data.ct_percentiles, data.mri_nonzero: the tool "
    "z-scores each volume, CT after clipping)",
    "spacing or zoom (data.spacing in mm, or data.zoom)",
    "channel order (dataset.json channel_names against the U-Net's input channels)",
    "patch size and crop (data.patch_size, data.crop)",
    "orientation (data.reorient)")


def score_given_unet(cfg: ExperimentConfig, prepared, model=None) -> dict:
    """Score the given U-Net (``model``, else loaded from ``unet.pretrained``) on val_dt's
    slices of ``prepared``, log the score (with ``unet.expected_dice`` when set; a warning when
    more than :data:`EXPECTED_DICE_TOLERANCE` below it) and write ``unet_score.json`` (run folder):
    ``unet``, ``split``, ``cases``, ``mean_dice``, ``expected_dice``, ``tolerance`` and
    ``below_expected``. Returns that record."""
    path = trained_unet_path(cfg)
    if model is None:
        model = load_unet(path)
    images, masks, case_ids = prepared.arrays(SELECTION_SPLIT)
    scores = case_scores(model, images, masks, case_ids, cfg.evaluation.batch_size,
                         label_rule(cfg, prepared))
    score = mean_dice(scores)
    expected = cfg.unet.expected_dice
    below = expected is not None and not score >= expected - EXPECTED_DICE_TOLERANCE
    record = {"unet": str(cfg.unet.pretrained or path), "split": SELECTION_SPLIT, "metric": cfg.evaluation.metric,
              "cases": len(scores),
              "mean_dice": score, "expected_dice": expected,
              "tolerance": EXPECTED_DICE_TOLERANCE, "below_expected": below}
    atomic_write_json(RunLayout.of(cfg).unet_score, record)
    log_score(record)
    return record


def log_score(record: dict) -> None:
    """The console lines of a :func:`score_given_unet` record (also for a finished Stage II)."""
    head = (f"the given U-Net {record['unet']} on {record['split']} ({record['cases']} cases, "
            f"this tool's preprocessing): mean Dice {record['mean_dice']:.4f}")
    expected = record.get("expected_dice")
    if expected is None:
        log.info("%s (set unet.expected_dice to its own number to compare)", head)
        return
    log.info("%s; its own number (unet.expected_dice) %.4f", head, expected)
    if record.get("below_expected"):
        log.warning(
            "the given U-Net scores %.4f on %s, more than %.2f below its own %.4f: it probably "
            "does not see what it was trained on. The usual cause is preprocessing; compare "
            "how it was trained with this config: %s. Search and Stage III would otherwise "
            "repair the preprocessing rather than improve the U-Net", record["mean_dice"],
            record["split"], record.get("tolerance", EXPECTED_DICE_TOLERANCE), expected,
            "; ".join(PREPROCESSING_CAUSES))
