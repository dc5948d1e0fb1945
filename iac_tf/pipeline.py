"""The three stages as Python calls over one :class:`~iac_tf.experiment.ExperimentConfig`
(what the ``iac`` CLI and the notebooks use)::

    from iac_tf.experiment import load_experiment
    from iac_tf import pipeline
    cfg = load_experiment("experiments/sample.yaml")
    pipeline.run_stage1(cfg); pipeline.run_stage2(cfg); pipeline.run_stage3(cfg)

Every stage first compares the config with the records of the stage folders it uses
(:func:`iac_tf.experiment.check_stages`) and stops with :class:`~iac_tf.experiment.RunConflict`
before touching any file if they differ; a finished stage with the same config is skipped.

Two different Dice numbers appear: the *soft Dice* (slice level, on the sigmoid outputs) that
selects each stage's best epoch, and the *per-case Dice* of the evaluation (thresholded masks,
one score per case and class, the paper's Table numbers).
"""

from __future__ import annotations

import functools
import json
import pathlib

import iac_tf.search  # noqa: F401  (registers the IAC cells, so IAC U-Nets load)
from iac_tf._keras import tf
from iac_tf.data import prepare_dataset
from iac_tf.diskspace import disk_full_guard
from iac_tf.evaluation.plots import plot_history
from iac_tf.evaluation.report import evaluate_pair, markdown_table
from iac_tf.experiment import (STAGE_NAMES, ExperimentConfig, check_stages, record_stage,
                               restart_from, write_resolved)
from iac_tf.genotype import Genotype
from iac_tf.preflight import checked_prepare
from iac_tf.training.history import CsvHistory
from iac_tf.training.precision import precision_policy
from iac_tf.training.seeding import seed_everything
from iac_tf.training.stage1 import BEST_MODEL, SUMMARY, TrainResult, train_model
from iac_tf.training.stage2 import SearchResult, search
from iac_tf.training.stage3 import train_iac_unet
from iac_tf.unets import build_unet, load_unet


def _outputs_guarded(stage):
    """A full disk anywhere in ``stage``'s writes -> DiskFullError naming the run folder, with
    the hidden temporaries (``.*.tmp*``, ``*_temp`` checkpoint parts) removed."""
    @functools.wraps(stage)
    def run(cfg: ExperimentConfig, *args, **kwargs):
        with disk_full_guard(cfg.run_dir, "the run's outputs", "output_dir",
                             cleanup=lambda: [*cfg.run_dir.rglob(".*.tmp*"),
                                              *cfg.run_dir.rglob("ckpt-*_temp")]):
            return stage(cfg, *args, **kwargs)
    return run


def _log(msg: str) -> None:
    print(f"[iac] {msg}", flush=True)


def prepare(cfg: ExperimentConfig):
    """Build or reuse the data cache and splits (``iac data prepare``)."""
    return prepare_dataset(cfg.data, progress=True)


def _epoch_data(prepared, split: str, batch_size: int):
    """``(epoch, seed) -> dataset`` of one split; ``seed=None`` (no shuffling) keeps the cache
    order. The seeds come from the epoch loop (:mod:`iac_tf.training.seeding`)."""
    return lambda epoch, seed: prepared.dataset(split, batch_size, shuffle=seed is not None,
                                                seed=0 if seed is None else seed)


def _fixed(dataset):
    return lambda epoch, seed: dataset


def stage1_model_path(cfg: ExperimentConfig) -> pathlib.Path:
    return cfg.stage_dir(1) / BEST_MODEL


def trained_unet_path(cfg: ExperimentConfig) -> pathlib.Path:
    """The U-Net that Stages II/III improve: ``unet.pretrained`` or Stage I's best model."""
    if cfg.unet.pretrained:
        return pathlib.Path(cfg.unet.pretrained)
    path = stage1_model_path(cfg)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no trained U-Net. Run Stage I first (`iac stage1 CONFIG`) or set "
            "unet.pretrained to your trained U-Net file."
        )
    return path


def _used_stages(cfg: ExperimentConfig, stage: int) -> tuple[int, ...]:
    """The stage folders whose results stage ``stage`` reads (and the stage itself)."""
    return tuple(s for s in range(1, stage + 1)
                 if not (s == 1 < stage and cfg.unet.pretrained)
                 and not (s == 2 < stage and cfg.stage3.genotype))


def _begin(cfg: ExperimentConfig, stage: int, restart: int | None, unet=None, genotype=None):
    """Clear on ``--restart``, compare the config with the stage records (stop on a difference,
    before any write), run the pre-flight checks and prepare the data (:mod:`iac_tf.preflight`:
    folders, ``unet(cfg)``'s U-Net file against the data, ``genotype(cfg)``'s file), then record
    the config and seed everything. Returns the prepared data."""
    if restart is not None:
        for path in restart_from(cfg, restart):
            _log(f"--restart stage{restart}: removed {path}")
    check_stages(cfg, _used_stages(cfg, stage))
    prepared = checked_prepare(cfg, stage, prepare, unet_path=unet(cfg) if unet else None,
                               genotype_path=genotype(cfg) if genotype else None)
    write_resolved(cfg)
    record_stage(cfg, stage)
    seed_everything(cfg.seed, cfg.deterministic)
    return prepared


def _finished_training(cfg: ExperimentConfig, stage: int, epochs: int) -> TrainResult | None:
    """The result of a finished Stage I/III run in the stage folder, else ``None``."""
    folder = cfg.stage_dir(stage)
    summary_path, rows = folder / SUMMARY, CsvHistory(folder / "history.csv").rows()
    if not summary_path.is_file() or len(rows) < epochs:
        return None
    summary = json.loads(summary_path.read_text())
    return TrainResult(run_dir=folder, best_model_path=folder / BEST_MODEL,
                       best_epoch=int(summary["best_epoch"]),
                       best_val_soft_dice=float(summary["best_val_soft_dice"]), history=rows,
                       seconds=0.0)


def _skipped(stage: int, result: TrainResult) -> None:
    _log(f"{STAGE_NAMES[stage]}: complete (best val_dt soft Dice {result.best_val_soft_dice:.4f}, "
         f"epoch {result.best_epoch}), skipped")


@_outputs_guarded
def run_stage1(cfg: ExperimentConfig, restart: int | None = None) -> TrainResult:
    """Stage I: build the configured U-Net and train it on train_dt (best by val_dt soft Dice).
    ``restart``: clear that stage and all later ones first (``--restart stageN``)."""
    prepared = _begin(cfg, 1, restart)
    done = _finished_training(cfg, 1, cfg.stage1.epochs)
    if done is not None:
        _skipped(1, done)
        return done
    _log(f"Stage I: {cfg.unet.backbone} U-Net on {prepared.num_slices('train_dt')} train / "
         f"{prepared.num_slices('val_dt')} val slices -> {cfg.stage_dir(1)}")
    with precision_policy(cfg.stage1.mixed_precision):
        size = cfg.data.patch_size
        model = build_unet(
            cfg.unet.backbone, input_shape=(size, size, prepared.in_channels),
            classes=prepared.num_classes, encoder_weights=cfg.unet.encoder_weights,
            decoder_filters=tuple(cfg.unet.decoder_filters) if cfg.unet.decoder_filters else None,
            **cfg.unet.options,
        )
        bs = cfg.stage1.batch_size
        result = train_model(model, _epoch_data(prepared, "train_dt", bs),
                             _fixed(prepared.dataset("val_dt", bs)), cfg.stage1, cfg.stage_dir(1),
                             seed=cfg.seed)
    _plot(cfg.stage_dir(1), "Stage I")
    _log(f"Stage I done: best val_dt soft Dice (slice level, selects the epoch) "
         f"{result.best_val_soft_dice:.4f} at epoch {result.best_epoch}")
    return result


@_outputs_guarded
def run_stage2(cfg: ExperimentConfig, restart: int | None = None) -> SearchResult:
    """Stage II: search the IAC on the frozen trained U-Net (train_search_dt / val_search_dt)."""
    prepared = _begin(cfg, 2, restart, unet=trained_unet_path)
    folder = cfg.stage_dir(2)
    times = folder / "search_time.json"
    if times.is_file() and json.loads(times.read_text()).get("epochs", 0) >= cfg.stage2.epochs:
        paths = sorted((folder / "genotypes").glob("epoch_*.json"))
        _log(f"Stage II: complete ({cfg.stage2.epochs} search epochs, {len(paths)} genotypes in "
             f"{folder / 'genotypes'}), skipped")
        return SearchResult(run_dir=folder, genotype_paths=paths,
                            history=CsvHistory(folder / "history.csv").rows(), seconds=0.0)
    unet_path = trained_unet_path(cfg)
    bs = cfg.stage2.batch_size
    _log(f"Stage II: searching on {unet_path} with {prepared.num_slices('train_search_dt')} / "
         f"{prepared.num_slices('val_search_dt')} search slices -> {folder}")
    strategy = (tf.distribute.MirroredStrategy() if cfg.stage2.distribute == "mirrored"
                else tf.distribute.get_strategy())
    with precision_policy(cfg.stage2.mixed_precision):
        with strategy.scope():
            unet = load_unet(unet_path)
        result = search(unet, _epoch_data(prepared, "train_search_dt", bs),
                        _epoch_data(prepared, "val_search_dt", bs), cfg.stage2, folder,
                        seed=cfg.seed, strategy=strategy)
    _log(f"Stage II done: {len(result.genotype_paths)} genotypes in {folder / 'genotypes'}")
    return result


def stage3_genotype_path(cfg: ExperimentConfig) -> pathlib.Path:
    """``stage3.genotype`` if set, else Stage II's genotype of ``stage3.genotype_epoch`` (default:
    the last epoch searched)."""
    if cfg.stage3.genotype:
        return pathlib.Path(cfg.stage3.genotype)
    gdir = cfg.stage_dir(2) / "genotypes"
    if cfg.stage3.genotype_epoch is not None:
        path = gdir / f"epoch_{cfg.stage3.genotype_epoch:03d}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no genotype for stage3.genotype_epoch={cfg.stage3.genotype_epoch}")
        return path
    paths = sorted(gdir.glob("epoch_*.json"))
    if not paths:
        raise FileNotFoundError(f"{gdir}: no genotypes. Run Stage II first or set stage3.genotype.")
    return paths[-1]


@_outputs_guarded
def run_stage3(cfg: ExperimentConfig, restart: int | None = None) -> TrainResult:
    """Stage III: train the discrete IAC in the frozen U-Net, export it, and compare it with the
    U-Net on the evaluation split (Dice table, tests of significance, plots)."""
    prepared = _begin(cfg, 3, restart, unet=trained_unet_path, genotype=stage3_genotype_path)
    result = _finished_training(cfg, 3, cfg.stage3.epochs)
    if result is not None:
        _skipped(3, result)
    else:
        unet_path = trained_unet_path(cfg)
        geno_path = stage3_genotype_path(cfg)
        genotype = Genotype.from_json(geno_path)
        _log(f"Stage III: genotype {geno_path} -> {cfg.stage_dir(3)}\n{genotype}")
        with precision_policy(cfg.stage3.mixed_precision):
            unet = load_unet(unet_path)
            bs = cfg.stage3.batch_size
            result = train_iac_unet(unet, genotype, _epoch_data(prepared, "train_dt", bs),
                                    _fixed(prepared.dataset("val_dt", bs)), cfg.stage3,
                                    cfg.stage_dir(3), seed=cfg.seed)
        _plot(cfg.stage_dir(3), "Stage III")
        _log(f"Stage III done: best val_dt soft Dice (slice level, selects the epoch) "
             f"{result.best_val_soft_dice:.4f} at epoch {result.best_epoch}")
    _evaluate(cfg, prepared)
    return result


@_outputs_guarded
def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice of the U-Net and the Stage III IAC U-Net on ``evaluation.split``
    (``prepared``: the already prepared data, if the caller has it). Stops with
    :class:`~iac_tf.experiment.RunConflict` if the stage folders hold another config's results."""
    check_stages(cfg, _used_stages(cfg, 3))
    return _evaluate(cfg, prepared)


def _evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    baseline = load_unet(trained_unet_path(cfg))
    candidate = load_unet(cfg.stage_dir(3) / BEST_MODEL)
    names = ("unet", "iac")
    out_dir = cfg.run_dir / "evaluation"
    report = evaluate_pair(baseline, candidate, images, masks, case_ids, prepared.class_names,
                           out_dir, names=names, batch_size=cfg.evaluation.batch_size)
    _log(f"per-case Dice on {cfg.evaluation.split} ({report['split_cases']} cases; "
         f"{out_dir / 'dice_table.md'}):\n{markdown_table(report, names)}")
    return report


def run_all(cfg: ExperimentConfig, restart: int | None = None) -> None:
    """Stages I (unless ``unet.pretrained`` is set), II and III. All stage records are compared
    before any stage starts."""
    if restart is not None:
        for path in restart_from(cfg, restart):
            _log(f"--restart stage{restart}: removed {path}")
    check_stages(cfg, _used_stages(cfg, 3))
    if not cfg.unet.pretrained:
        run_stage1(cfg)
    run_stage2(cfg)
    run_stage3(cfg)


def _plot(stage_dir: pathlib.Path, title: str) -> None:
    history = stage_dir / "history.csv"
    if history.exists():
        plot_history(history, stage_dir / "learning_curves.png", title=title)
