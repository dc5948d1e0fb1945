"""The evaluation (``iac evaluate``; the last step of ``iac run``, ``iac stage3`` and ``iac
compare``): every model of ``models.json`` against the U-Net, per case, on ``evaluation.split``
(slices of the cache: ``dice_per_case.csv``, the statistics, the Markdown table), and on the
split's whole volumes in their original space (Dice and HD95 in mm).

``evaluation.split`` (val_dt by default) is the split that also selected each stage's best
epoch, so its scores are in-sample. When the run has a ``test_dt`` (the dataset's
``imagesTs``/``labelsTs`` or ``data.test_fraction`` of the patients, see
:mod:`iac_tf.data.splits`), every model is also scored on its whole volumes in
``evaluation/test_dt/``: ``volumetric_per_case.csv``, ``volumetric_summary.json``,
``dice_per_case.csv`` (volumetric Dice, one column per model), ``stats.json`` (paired
comparisons with the U-Net), ``dice_table.md`` and the plots ``dice_paired.png`` /
``dice_methods.png``; ``evaluation/dice_table.md`` gets a ``test_dt`` section. The table and the
console name both splits and the decision rule (``evaluation.metric``: the label map of
:class:`~iac_tf.labels.LabelRule`, or each channel alone)."""

from __future__ import annotations

import logging
import pathlib

from iac_tf.config.data import SELECTION_SPLIT, TEST_SPLIT
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.evaluation.report import compare_scores, evaluate_models, markdown_table, volume_section
from iac_tf.files import atomic_write_text, remove
from iac_tf.inference.run_scores import score_volumes, volumetric_scores
from iac_tf.models import load_unet
from iac_tf.pipeline.common import label_rule, prepare, trained_unet_path
from iac_tf.run_layout import DICE_TABLE, RunLayout, implant_model, sweep_epoch

log = logging.getLogger("iac_tf.pipeline")


def evaluation_models(cfg: ExperimentConfig) -> dict[str, pathlib.Path]:
    """The models the evaluation compares with the U-Net, in table order: ``iac``, the sweep's
    ``iac_epoch_XXX``, the other implant modes, ``unet_continued``, the configured comparisons,
    then anything else registered."""
    registered = {k: v for k, v in RunLayout.of(cfg).model_paths().items() if k != "unet"}
    order = (["iac"] + sorted(k for k in registered if sweep_epoch(k) is not None)
             + [implant_model(m) for m in cfg.stage3.extra_implant_modes] + ["unet_continued"]
             + list(cfg.comparisons))
    names = [k for k in order if k in registered] + sorted(k for k in registered if k not in order)
    return {k: registered[k] for k in names}


def run_evaluation(cfg: ExperimentConfig, prepared=None) -> dict:
    """``iac evaluate`` (:func:`iac_tf.pipeline.stages.evaluate`) without its checks (the caller
    made them: the evaluation step of a run plan), holding the run's lock (re-entrant: the commands already hold it)."""
    with RunLayout.of(cfg).lock():
        return _run_evaluation(cfg, prepared)


def _run_evaluation(cfg: ExperimentConfig, prepared=None) -> dict:
    layout, models = RunLayout.of(cfg), evaluation_models(cfg)
    if not models:
        raise FileNotFoundError(f"{layout.models_index}: no trained model to evaluate; "
                                "run Stage III (`iac stage3`) or the comparisons (`iac compare`) first")
    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    loaded = {"unet": load_unet(trained_unet_path(cfg))}
    loaded.update({name: load_unet(path) for name, path in models.items()})
    out_dir = layout.evaluation
    split = cfg.evaluation.split
    # the IAC (every mode) against the budget-matched baseline too
    pairs = [("unet_continued", n) for n in loaded if n.startswith("iac") and "unet_continued" in loaded]
    rule = label_rule(cfg, prepared)
    rule.check_masks(masks, f"{getattr(prepared, 'cache_path', 'the data cache')} ({split})")
    report = evaluate_models(loaded, images, masks, case_ids, prepared.class_names, out_dir,
                             batch_size=cfg.evaluation.batch_size, pairs=pairs, split=split,
                             selected_on=SELECTION_SPLIT, rule=rule)
    table = markdown_table(report, split, SELECTION_SPLIT)
    log.info("per-case Dice on %s (%d cases; rule %s; %s):\n%s", split, report["split_cases"],
             rule.metric, out_dir / DICE_TABLE, table)
    # Dice and HD95 (mm) of whole predicted volumes of evaluation.split
    report["volumetric"] = volumetric_scores(cfg, prepared, loaded,
                                             batch_size=cfg.evaluation.batch_size, rule=rule)
    report["test"] = _test_scores(cfg, prepared, loaded, pairs, table, rule)
    return report


def _test_scores(cfg: ExperimentConfig, prepared, loaded: dict, pairs, table: str,
                 rule) -> dict | None:
    """Every model on the whole volumes of ``test_dt`` (``evaluation/test_dt/``), its section
    appended to ``evaluation/dice_table.md``; without test cases one line says so (and the
    table) and nothing else is written (scores of an earlier evaluation with test cases are
    removed). Returns the ``test_dt`` ``stats.json`` content (with ``volumetric``: the
    summary), or None."""
    layout = RunLayout.of(cfg)
    out_dir, test_dir = layout.evaluation, layout.test_evaluation
    test_cases = list(getattr(prepared, "test_cases", []))
    scores = None
    if test_cases:
        scores = score_volumes(cfg, loaded, TEST_SPLIT, case_ids=test_cases, out_dir=test_dir,
                               batch_size=cfg.evaluation.batch_size, rule=rule)
    if scores is None:
        note = (f"No {TEST_SPLIT}: data.test_fraction is 0 and the dataset has no "
                f"imagesTs/labelsTs, so every score of this run is on {SELECTION_SPLIT} or "
                f"another split the run trained or selected on.")
        log.info("%s", note)
        if test_dir.is_dir():
            remove(test_dir)
            log.info("removed %s (scores of an earlier evaluation with test cases)", test_dir)
        atomic_write_text(out_dir / DICE_TABLE, table + "\n" + note + "\n")
        return None
    report = compare_scores(scores.dice_by_case(), scores.class_names, test_dir, pairs=pairs,
                            split=TEST_SPLIT, selected_on=SELECTION_SPLIT, unit="volumes",
                            rule=rule,
                            extra={"split": TEST_SPLIT, "selected_on": SELECTION_SPLIT,
                                   "cases": list(scores.cases)})
    section = volume_section(report, scores.summary, TEST_SPLIT, SELECTION_SPLIT)
    atomic_write_text(out_dir / DICE_TABLE, table + "\n" + section)
    log.info("per-case Dice of whole volumes on %s (%d cases; rule %s; %s):\n%s", TEST_SPLIT,
             len(scores.cases), rule.metric, test_dir, section)
    report["volumetric"] = scores.summary
    return report
