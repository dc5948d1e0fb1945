"""What every stage command shares: the run's lock and full-disk guard, the checks of the data
and the records written once they passed (the order is the run plan's executor,
:func:`iac_tf.pipeline.stages.execute`), the data sources a training reads, and where the
trained U-Net is."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import sys

import numpy as np

import iac_tf.comparisons  # noqa: F401  (registers the comparison modules, so they load)
import iac_tf.search  # noqa: F401  (registers the IAC cells, so IAC U-Nets load)
from iac_tf.console import run_log
from iac_tf.data import prepare_dataset
from iac_tf.data.fingerprint import data_record, same_as_legacy
from iac_tf.diskspace import disk_full_guard
from iac_tf.errors import DataError, UserError
from iac_tf.evaluation.metrics import mean_case_dice
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.labels import LabelRule
from iac_tf.models import load_unet
from iac_tf.run_layout import DatasetMismatch, RunLayout, trained_unet
from iac_tf.run_records import restart_from, restart_plan, write_resolved
from iac_tf.run_unet import adopt, checked_source, run_unet

log = logging.getLogger("iac_tf.pipeline")


def guarded(command):
    """Run ``command(cfg, ...)`` holding the run's lock (one writer per run folder, taken before
    anything is written: a second process stops at once naming the holder), with a full disk
    anywhere in its writes turned into a DiskFullError naming the run folder and the hidden
    temporaries (``.*.tmp*``, ``*_temp`` checkpoint parts) removed."""
    @functools.wraps(command)
    def run(cfg: ExperimentConfig, *args, **kwargs):
        layout = RunLayout.of(cfg)
        with layout.lock(), run_log(layout.log, layout.is_run, _command_line(command)), \
                disk_full_guard(
                cfg.run_dir, "the run's outputs", "output_dir",
                cleanup=lambda: [*cfg.run_dir.rglob(".*.tmp*"), *cfg.run_dir.rglob("ckpt-*_temp")]):
            return command(cfg, *args, **kwargs)
    return run


def _command_line(command) -> str:
    """The command as the user typed it (``iac run ...``), else the Python function's name."""
    if sys.argv and pathlib.Path(sys.argv[0]).name == "iac":
        return " ".join(["iac", *sys.argv[1:]])
    return f"{command.__module__}.{command.__name__}"


def prepare(cfg: ExperimentConfig):
    """Build or reuse the data cache and splits (``iac data prepare``)."""
    return prepare_dataset(cfg.data, progress=True)


# ---------------------------------------------------------------------------- the trained U-Net
def trained_unet_path(cfg: ExperimentConfig) -> pathlib.Path:
    """The U-Net that Stages II/III improve: the run's verified copy of ``unet.pretrained``
    (:mod:`iac_tf.run_unet`; in a run made before runs kept their U-Net, the file outside it),
    or Stage I's best model."""
    if cfg.unet.pretrained:
        return run_unet(RunLayout.of(cfg), cfg.unet.pretrained)
    path = trained_unet(cfg)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no trained U-Net. Run Stage I first (`iac stage1 CONFIG`) or set "
            "unet.pretrained to your trained U-Net file."
        )
    return path


def unet_to_check(cfg: ExperimentConfig, restart: int | None = None) -> pathlib.Path:
    """The U-Net file a stage's pre-flight inspects, before anything is written: with
    ``unet.pretrained``, that file (the run copies it after the checks) or the run's own copy
    (:func:`iac_tf.run_unet.checked_source`: refuses other content than the run was made with);
    else Stage I's model."""
    if cfg.unet.pretrained:
        return checked_source(RunLayout.of(cfg), cfg.unet.pretrained, restart)
    return trained_unet_path(cfg)


# ---------------------------------------------------------------------------- checks, then writes
@dataclasses.dataclass
class CheckedData:
    """The dataset record of ``data`` now and whether the run's record is to be written."""

    record: dict
    write: bool


def checked_data(cfg: ExperimentConfig) -> CheckedData:
    """The dataset record of ``data`` now (by content: :mod:`iac_tf.data.fingerprint`),
    compared with the run's (raises DatasetMismatch naming both datasets and the files that
    differ, before anything is written)."""
    layout = RunLayout.of(cfg)
    previous = layout.read_data_record()
    try:
        record = data_record(cfg.data, previous, training_cases=True)
    except DataError as exc:
        if previous is None:
            raise
        raise DatasetMismatch(
            f"{cfg.run_dir} was made on the dataset {previous.get('root')} "
            f"({previous.get('files')} files), but data.root now names {cfg.data.root}, which "
            f"cannot be read ({exc}). Nothing was changed. Point data.root at the run's "
            "dataset (an absolute path), or start a new run (--set name=...)") from None
    write = layout.check_data(record, lambda old: same_as_legacy(old, cfg.data))
    layout.check_unet_train_cases(record)
    return CheckedData(record, write)


def early_data_check(cfg: ExperimentConfig) -> CheckedData | None:
    """For a run that has a dataset record: :func:`checked_data` before any other work (a
    rerun on another dataset stops before its slice cache is built); ``None`` otherwise."""
    return checked_data(cfg) if RunLayout.of(cfg).data_record.is_file() else None


def write_run_records(cfg: ExperimentConfig, restart: int | None, data: CheckedData,
                      removal: tuple[list, list] | None = None) -> None:
    """After every check passed: ``--restart`` deletes (``removal``: the run plan's ``(removed,
    kept)``, else :func:`~iac_tf.run_records.restart_plan` now), then the run records are
    written (the run folder marked as the tool's, its copy of ``unet.pretrained``, the resolved
    config, the dataset record: written once, and again after a restart)."""
    layout = RunLayout.of(cfg)
    if restart is not None:
        removed, kept = removal if removal is not None else restart_plan(cfg, restart)
        for path in restart_from(cfg, restart, removed):
            log.info("--restart stage%d: removed %s", restart, path)
        for path in kept:
            log.info("--restart stage%d: kept %s (it depends on earlier stages and on training "
                     "keys that did not change)", restart, path)
    if cfg.unet.pretrained:
        layout.claim()
        adopt(layout, cfg.unet.pretrained)
    write_resolved(cfg)
    # after a restart the record is rewritten too: the restarted stages may use another
    # preprocessing (zoom, spacing), which inference reads from it
    if data.write or restart is not None:
        layout.write_data_record(data.record)


# ---------------------------------------------------------------------------- data of a training
def epoch_data(prepared, split: str, batch_size: int):
    """``(epoch, seed) -> dataset`` of one split; ``seed=None`` (no shuffling) keeps the cache
    order. The seeds come from the epoch loop (:mod:`iac_tf.training.seeding`)."""
    return lambda epoch, seed: prepared.dataset(split, batch_size, shuffle=seed is not None,
                                                seed=0 if seed is None else seed)


def fixed(dataset):
    return lambda epoch, seed: dataset


def label_rule(cfg: ExperimentConfig, prepared) -> LabelRule:
    """The run's decision rule from probabilities to labels: the dataset's classes
    (``prepared.class_values``, hence its label mode), the output of the run's U-Net (one
    sigmoid per class, or a softmax over background + classes: labels by argmax,
    :meth:`LabelRule.for_outputs`) and ``evaluation.metric``. Every score of the run uses it:
    the selection metrics, the evaluation tables, the overlays; its output picks the loss the
    cells train with (:func:`iac_tf.losses.training_loss`)."""
    classes = prepared.class_values
    channels = unet_output_channels(cfg)
    if channels is None:  # Stage I's zoo U-Net: unet.output
        channels = len(classes) + (cfg.unet.output == "softmax")
    try:
        return LabelRule.for_outputs(classes, channels, cfg.evaluation.metric)
    except ValueError as exc:
        what = trained_unet(cfg) if cfg.unet.pretrained else "unet.output: softmax"
        raise UserError(f"{what}: the U-Net does not suit the classes "
                        f"{list(prepared.class_names)} of {cfg.data.root}: {exc}") from None


def unet_output_channels(cfg: ExperimentConfig) -> int | None:
    """The output channels of a given U-Net (``unet.pretrained``; its file is loaded once per
    process and file version; the run's copy when the file is gone); ``None`` for Stage I's zoo
    U-Net (``unet.output``).

    Loading a model draws from Keras' seed generator, so the commands ask for it once before
    any unit seeds (:func:`iac_tf.pipeline.stages.execute`): a later call finds it cached and
    leaves the seeded initialisation of the cells as it was."""
    if not cfg.unet.pretrained:
        return None
    path = trained_unet(cfg)
    if not path.exists():  # a run folder moved without the user's file: the run's own copy
        path = run_unet(RunLayout.of(cfg), cfg.unet.pretrained)
    st = path.stat()
    return _output_channels(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _output_channels(path: str, mtime_ns: int, size: int) -> int:
    """The output channels of the model file ``path`` (loaded once per file version)."""
    return int(load_unet(os.fspath(path)).output_shape[-1])


def case_scorer(prepared, train_cfg, batch_size: int = 32, rule: LabelRule | None = None):
    """``model -> per-case hard Dice on val_dt`` under ``rule`` when ``train_cfg.monitor`` is
    ``val_case_dice`` (the reported score selects the epoch), else None."""
    if train_cfg.monitor != "val_case_dice":
        return None
    images, masks, case_ids = prepared.arrays("val_dt")
    if rule is not None:
        rule.check_masks(masks, f"{prepared.cache_path} (val_dt)")

    def score(model) -> float:
        probs = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float32)
        return mean_case_dice(masks, probs, case_ids, rule)

    return score
