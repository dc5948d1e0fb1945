"""One unit of training, and the kinds of trained model as rows of one table.

Every model a run trains -- Stage I's U-Net, Stage III's IAC U-Net (one per genotype epoch of a
sweep, one per extra implant mode), the budget-matched ``unet_continued`` and each comparison
method -- is a :class:`TrainingUnit`: a name in ``models.json``, a folder, its training settings
and a function that builds or loads the model and trains it. :func:`train_unit` runs every unit
the same way: skip it if finished, else seed, train under the precision policy, plot the learning
curves, and register the best model.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Callable

import yaml

from iac_tf._keras import tf
from iac_tf.config import dump_yaml
from iac_tf.config.stages import TrainingSettings
from iac_tf.evaluation.plots import plot_history
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.files import atomic_write_text
from iac_tf.genotype import Genotype
from iac_tf.losses import LOSS_NAMES
from iac_tf.pipeline.common import (case_scorer, epoch_data, fixed, label_rule,
                                    trained_unet_path)
from iac_tf.run_layout import (BEST_MODEL, CONFIG, HISTORY, LEARNING_CURVES, RunLayout,
                              trained_unet, training_done)
from iac_tf.run_records import as_recorded, unit_record
from iac_tf.training.precision import precision_policy
from iac_tf.training.seeding import seed_everything
from iac_tf.training.fit import TrainResult, train_model
from iac_tf.training.stage3 import train_comparison, train_iac_unet
from iac_tf.models import build_configured_unet, load_unet

log = logging.getLogger("iac_tf.pipeline")

#: ``fit(train, val, scorer, rule) -> TrainResult``: build or load the model, then train it
Fit = Callable[..., TrainResult]


@dataclasses.dataclass(frozen=True)
class TrainingUnit:
    """One trained model of a run.

    Args:
        name: its name in ``models.json`` (``unet``, ``iac``, ``iac_epoch_025``, ``iac_residual``,
            ``unet_continued``, ``attention``, ...).
        label: how the console and the learning-curve plot call it.
        folder: where it trains (``best_model.keras``, ``history.csv``, ``summary.json``).
        settings: its training section (epochs, batch size, selection, mixed precision).
        fit: ``fit(train, val, scorer, rule) -> TrainResult`` builds or loads the model and
            trains it (``rule``: the run's :class:`~iac_tf.labels.LabelRule`).
        intro: what is trained, for the console line that starts it.
        needs_export: finished only once ``savedmodel/`` exists too (Stage III's export).
        depends_on: for a model of ``compare/``, the stages whose results it reads; its record
            (:func:`~iac_tf.run_records.unit_record`) tells ``--restart`` whether it survives.
    """

    name: str
    label: str
    folder: pathlib.Path
    settings: TrainingSettings
    fit: Fit
    intro: str
    needs_export: bool = False
    depends_on: tuple[int, ...] | None = None


def finished(unit: TrainingUnit) -> TrainResult | None:
    """The result of a finished unit (its summary and all its epochs; and its export if it
    needs one), else ``None``."""
    done = training_done(unit.folder, unit.settings.epochs, unit.needs_export)
    if done is None:
        return None  # unfinished, or killed between the last epoch and the export
    summary = done["summary"]
    return TrainResult(run_dir=unit.folder, best_model_path=unit.folder / BEST_MODEL,
                       best_epoch=int(summary["best_epoch"]),
                       best_val_soft_dice=float(summary["best_val_soft_dice"]),
                       history=done["history"], seconds=0.0,
                       monitor=summary.get("selection_metric", "val_soft_dice"),
                       best_score=float(summary.get("best_score", summary["best_val_soft_dice"])))


def strategy(distribute: str) -> tf.distribute.Strategy:
    """``MirroredStrategy`` over every visible GPU for ``distribute: mirrored``, else the
    default strategy. The model is built or loaded, compiled and trained inside its scope.
    One mirrored strategy serves every unit of a process: a second one in the same process
    mixes up their collective all-reduce ops (measured on two logical CPUs)."""
    if distribute != "mirrored":
        return tf.distribute.get_strategy()
    if _MIRRORED.get("strategy") is None:
        _MIRRORED["strategy"] = tf.distribute.MirroredStrategy()
    return _MIRRORED["strategy"]


#: the process' one MirroredStrategy (created on first use)
_MIRRORED: dict[str, tf.distribute.Strategy] = {}


def train_unit(cfg: ExperimentConfig, prepared, unit: TrainingUnit,
               on_trained: Callable[[TrainResult], None] | None = None) -> TrainResult:
    """Train ``unit`` (or skip it when finished; an interrupted one resumes), plot its curves
    and register it in ``models.json``. ``on_trained`` sees a result trained now."""
    result = finished(unit)
    if result is not None:
        log.info("%s: complete (best val_dt soft Dice %.4f, epoch %d), skipped", unit.label,
                 result.best_val_soft_dice, result.best_epoch)
    else:
        rule = label_rule(cfg, prepared)
        log.info("%s: %s -> %s (%s output: %s loss)", unit.label, unit.intro, unit.folder,
                 rule.output, LOSS_NAMES[rule.output])
        if unit.depends_on is not None:
            unit.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(RunLayout.of(cfg).unit_record(unit.folder), yaml.safe_dump(
                unit_record(unit.settings, unit.depends_on), sort_keys=False))
        seed_everything(cfg.seed, cfg.deterministic)
        s = unit.settings
        with precision_policy(s.mixed_precision), strategy(s.distribute).scope():
            result = unit.fit(epoch_data(prepared, "train_dt", s.batch_size),
                              fixed(prepared.dataset("val_dt", s.batch_size)),
                              case_scorer(prepared, s, cfg.evaluation.batch_size, rule), rule)
        history = unit.folder / HISTORY
        if history.exists():
            plot_history(history, unit.folder / LEARNING_CURVES, title=unit.label)
        log.info("%s done in %.1f s: best val_dt %s (selects the epoch; rule %s) %.4f at "
                 "epoch %d%s", unit.label, result.seconds, result.monitor, rule.metric,
                 result.best_score, result.best_epoch,
                 " (early stop: patience)" if result.stopped_early else "")
        if on_trained is not None:
            on_trained(result)
    RunLayout.of(cfg).register_model(unit.name, unit.folder / BEST_MODEL)
    return result


# ---------------------------------------------------------------------------- the kinds of unit
def stage1_unit(cfg: ExperimentConfig, prepared) -> TrainingUnit:
    """Stage I: the configured zoo U-Net, built and trained on train_dt."""
    def fit(train, val, scorer, rule):
        model = build_configured_unet(cfg, prepared.in_channels, prepared.num_classes)
        return train_model(model, train, val, cfg.stage1, RunLayout.of(cfg).stage(1), seed=cfg.seed,
                           case_scorer=scorer, rule=rule)

    return TrainingUnit(
        "unet", "Stage I", RunLayout.of(cfg).stage(1), cfg.stage1, fit,
        f"{cfg.unet.backbone} U-Net on {prepared.num_slices('train_dt')} train / "
        f"{prepared.num_slices('val_dt')} val slices")


def iac_unit(cfg: ExperimentConfig, name: str, genotype_path: pathlib.Path,
             folder: pathlib.Path, mode: str) -> TrainingUnit:
    """Stage III: the discrete IAC of ``genotype_path`` implanted (``mode``) in the frozen
    trained U-Net, trained on train_dt and exported."""
    s3 = cfg.stage3

    def fit(train, val, scorer, rule):
        unet = load_unet(trained_unet_path(cfg))
        return train_iac_unet(unet, Genotype.from_json(genotype_path), train, val, s3, folder,
                              seed=cfg.seed, case_scorer=scorer, implant_mode=mode,
                              search_cell_channels=cfg.stage2.cell_channels, rule=rule)

    intro = (f"{mode} implant, epoch selection by val_dt {s3.monitor}"
             f"{', epoch 0 included' if s3.evaluate_initial else ''}; genotype {genotype_path}\n"
             f"{Genotype.from_json(genotype_path)}")
    in_compare = folder.parent == RunLayout.of(cfg).compare_root
    return TrainingUnit(name, f"Stage III {name}", folder, s3, fit, intro,
                        needs_export=s3.export_savedmodel,
                        depends_on=_unet_stage(cfg) + (() if s3.genotype else (2,)) + (3,)
                        if in_compare else None)


def unet_continued_unit(cfg: ExperimentConfig) -> TrainingUnit:
    """The budget-matched baseline (not in the paper): the trained U-Net trained further from
    its best checkpoint for as many epochs as Stage III, with Stage III's optimiser, batch,
    selection metric and epoch 0."""
    s3 = cfg.stage3
    settings = s3.training()
    folder = RunLayout.of(cfg).compare("unet_continued")

    def fit(train, val, scorer, rule):
        return train_model(load_unet(trained_unet_path(cfg)), train, val, settings, folder,
                           seed=cfg.seed, case_scorer=scorer, rule=rule)

    return TrainingUnit("unet_continued", "unet_continued", folder, settings, fit,
                        f"budget-matched baseline, {s3.epochs} more epochs of "
                        f"{trained_unet(cfg)}, selection by val_dt {s3.monitor}",
                        depends_on=_unet_stage(cfg))


def comparison_unit(cfg: ExperimentConfig, method: str) -> TrainingUnit:
    """A comparison method (paper, Section V-A): its modules in the frozen trained U-Net,
    trained with Stage III's settings; its resolved config in its folder."""
    folder = RunLayout.of(cfg).compare(method)

    def fit(train, val, scorer, rule):
        folder.mkdir(parents=True, exist_ok=True)
        dump_yaml(as_recorded(cfg), folder / CONFIG)
        return train_comparison(load_unet(trained_unet_path(cfg)), method, train, val,
                                cfg.stage3, folder, seed=cfg.seed, case_scorer=scorer, rule=rule)

    return TrainingUnit(method, f"comparison {method}", folder, cfg.stage3, fit,
                        f"its modules in the frozen U-Net {trained_unet(cfg)}",
                        depends_on=_unet_stage(cfg))


def _unet_stage(cfg: ExperimentConfig) -> tuple[int, ...]:
    """The stage whose result is the trained U-Net: Stage I, none for ``unet.pretrained``."""
    return () if cfg.unet.pretrained else (1,)
