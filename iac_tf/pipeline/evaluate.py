"""``iac evaluate``: every model of ``models.json`` against the U-Net, per case, on
``evaluation.split`` (slices of the cache: ``dice_per_case.csv``, the statistics, the Markdown
table), and on the split's whole volumes in their original space (Dice and HD95 in mm)."""

from __future__ import annotations

import logging
import pathlib

from iac_tf.evaluation.report import evaluate_models, markdown_table
from iac_tf.experiment import ExperimentConfig
from iac_tf.inference.run_scores import volumetric_scores
from iac_tf.pipeline.common import checked_data, guarded, prepare, trained_unet_path, used_stages
from iac_tf.run_records import check_stages
from iac_tf.models import load_unet

log = logging.getLogger("iac_tf.pipeline")


def evaluation_models(cfg: ExperimentConfig) -> dict[str, pathlib.Path]:
    """The models the evaluation compares with the U-Net, in table order: ``iac``, the sweep's
    ``iac_epoch_XXX``, the other implant modes, ``unet_continued``, the configured comparisons,
    then anything else registered."""
    layout = cfg.layout
    registered = {k: v for k, v in layout.model_paths().items() if k != "unet"}
    legacy = layout.best_model(layout.stage(3))  # a run folder from before models.json
    if "iac" not in registered and legacy.exists():
        registered["iac"] = legacy
    order = (["iac"] + sorted(k for k in registered if k.startswith("iac_epoch_"))
             + [f"iac_{m}" for m in cfg.stage3.extra_implant_modes] + ["unet_continued"]
             + list(cfg.comparisons))
    names = [k for k in order if k in registered] + sorted(k for k in registered if k not in order)
    return {k: registered[k] for k in names}


@guarded
def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice of the U-Net and of every model registered in ``models.json`` (the IAC
    U-Net, the sweep's epochs, the comparisons) on ``evaluation.split``, each compared with the
    U-Net (``prepared``: the already prepared data, if the caller has it). Stops with
    :class:`~iac_tf.run_records.RunConflict` if the stage folders hold another config's results,
    and with :class:`~iac_tf.run_layout.DatasetMismatch` if the data is not the run's."""
    cfg.layout.check_ours()
    check_stages(cfg, used_stages(cfg, 3 if cfg.method == "iac" else 1))
    checked_data(cfg)
    return run_evaluation(cfg, prepared)


def run_evaluation(cfg: ExperimentConfig, prepared=None) -> dict:
    """:func:`evaluate` without its checks (the caller made them)."""
    models = evaluation_models(cfg)
    if not models:
        raise FileNotFoundError(f"{cfg.layout.models_index}: no trained model to evaluate; "
                                "run Stage III (`iac stage3`) or the comparisons (`iac compare`) first")
    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    loaded = {"unet": load_unet(trained_unet_path(cfg))}
    loaded.update({name: load_unet(path) for name, path in models.items()})
    out_dir = cfg.layout.evaluation
    # the IAC (every mode) against the budget-matched baseline too
    pairs = [("unet_continued", n) for n in loaded if n.startswith("iac") and "unet_continued" in loaded]
    report = evaluate_models(loaded, images, masks, case_ids, prepared.class_names, out_dir,
                             batch_size=cfg.evaluation.batch_size, pairs=pairs)
    log.info("per-case Dice on %s (%d cases; %s):\n%s", cfg.evaluation.split,
             report["split_cases"], out_dir / "dice_table.md", markdown_table(report))
    # Dice and HD95 (mm) of whole predicted volumes of evaluation.split
    report["volumetric"] = volumetric_scores(cfg, prepared, loaded,
                                             batch_size=cfg.evaluation.batch_size)
    return report
