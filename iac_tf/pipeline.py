"""The three stages as Python calls over one :class:`~iac_tf.experiment.ExperimentConfig`
(what the ``iac`` CLI and the notebooks use)::

    from iac_tf.experiment import load_experiment
    from iac_tf import pipeline
    cfg = load_experiment("experiments/sample.yaml")
    pipeline.run_stage1(cfg); pipeline.run_stage2(cfg); pipeline.run_stage3(cfg)
    pipeline.run_compare(cfg)       # the comparison methods of `compare:` (compare/<method>/)
    pipeline.evaluate(cfg)          # every model of models.json against the U-Net

The run folder's layout is `iac_tf.run_layout`; every trained model is registered in its
``models.json`` (``unet``, ``iac``, ``iac_epoch_XXX``, ``attention``, ...).

Every stage first compares the config with the records of the stage folders it uses
(:func:`iac_tf.run_records.check_stages`) and stops with :class:`~iac_tf.run_records.RunConflict`
before touching any file if they differ; a finished stage with the same config is skipped.

Two different Dice numbers appear: the *soft Dice* (slice level, on the sigmoid outputs) that
selects each stage's best epoch, and the *per-case Dice* of the evaluation (thresholded masks,
one score per case and class, the paper's Table numbers).
"""

from __future__ import annotations

import functools
import pathlib

import iac_tf.comparisons  # noqa: F401  (registers the comparison modules, so they load)
import iac_tf.search  # noqa: F401  (registers the IAC cells, so IAC U-Nets load)
from iac_tf._keras import tf
from iac_tf.data import prepare_dataset
from iac_tf.diskspace import disk_full_guard
from iac_tf.evaluation.plots import plot_history
from iac_tf.evaluation.plots import plot_genotype_epochs
from iac_tf.evaluation.report import evaluate_models, markdown_table
from iac_tf.config import dump_yaml
from iac_tf.config import ConfigError
from iac_tf.data.fingerprint import data_record
from iac_tf.experiment import ExperimentConfig
from iac_tf.run_records import (STAGE_NAMES, check_stages, record_stage, restart_from,
                                write_resolved)
from iac_tf.files import atomic_write_json
from iac_tf.run_layout import HISTORY, training_done
from iac_tf.genotype import Genotype
from iac_tf.preflight import checked_prepare
from iac_tf.training.history import CsvHistory
from iac_tf.training.precision import precision_policy
from iac_tf.training.seeding import seed_everything
from iac_tf.training.stage1 import BEST_MODEL, Stage1Config, TrainResult, train_model, unconverged
from iac_tf.training.stage2 import SearchResult, search
from iac_tf.training.stage3 import train_comparison, train_iac_unet
from iac_tf.unets import build_unet, load_unet


def _outputs_guarded(stage):
    """Run ``stage`` holding the run's lock (one writer per run folder, taken before anything
    is written: a second process stops at once naming the holder), with a full disk anywhere in
    its writes turned into a DiskFullError naming the run folder and the hidden temporaries
    (``.*.tmp*``, ``*_temp`` checkpoint parts) removed."""
    @functools.wraps(stage)
    def run(cfg: ExperimentConfig, *args, **kwargs):
        with cfg.layout.lock(), disk_full_guard(
                cfg.run_dir, "the run's outputs", "output_dir",
                cleanup=lambda: [*cfg.run_dir.rglob(".*.tmp*"), *cfg.run_dir.rglob("ckpt-*_temp")]):
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


def _case_scorer(prepared, train_cfg, batch_size: int = 32):
    """``model -> per-case hard Dice on val_dt`` when ``train_cfg.monitor`` is ``val_case_dice``
    (the reported score selects the epoch), else None."""
    if getattr(train_cfg, "monitor", "val_soft_dice") != "val_case_dice":
        return None
    import numpy as np

    from iac_tf.evaluation.metrics import mean_case_dice

    images, masks, case_ids = prepared.arrays("val_dt")

    def score(model) -> float:
        probs = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float32)
        return mean_case_dice(masks, probs, case_ids)

    return score


def stage1_model_path(cfg: ExperimentConfig) -> pathlib.Path:
    return cfg.layout.best_model(cfg.layout.stage(1))


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


def _refuse_restart_of_inputs(cfg: ExperimentConfig, stage: int, restart: int | None,
                              command: str) -> None:
    """``iac stageN --restart stageR`` with R < N would delete results stage N reads."""
    if restart is not None and restart < stage and restart in _used_stages(cfg, stage):
        raise ConfigError(
            f"--restart stage{restart} would delete the {STAGE_NAMES[restart]} results that "
            f"{command} needs. Nothing was changed. Run every stage again from there with "
            f"`iac run CONFIG --restart stage{restart}`")


def _kept_stages(cfg: ExperimentConfig, stage: int, restart: int | None) -> tuple[int, ...]:
    """The stage folders stage ``stage`` reads that ``--restart`` keeps."""
    return tuple(s for s in _used_stages(cfg, stage) if restart is None or s < restart)


def _checked_data(cfg: ExperimentConfig) -> dict:
    """The dataset record of ``data`` now, compared with the run's (raises DatasetMismatch
    naming both before anything is written)."""
    record = data_record(cfg.data)
    cfg.layout.check_data(record)
    return record


def _commit(cfg: ExperimentConfig, restart: int | None, record: dict) -> None:
    """After every check passed: ``--restart`` deletes, then the run records are written (the
    run folder marked as the tool's, the resolved config, the dataset record)."""
    if restart is not None:
        for path in restart_from(cfg, restart):
            _log(f"--restart stage{restart}: removed {path}")
    write_resolved(cfg)
    if cfg.layout.read_data_record() is None:
        cfg.layout.write_data_record(record)


def _begin(cfg: ExperimentConfig, stage: int, restart: int | None, unet=None, genotype=None):
    """Check everything, then clear on ``--restart`` and record: the config against the stage
    records (stop on a difference), the pre-flight checks and the data preparation
    (:mod:`iac_tf.preflight`: folders, ``unet(cfg)``'s U-Net file against the data,
    ``genotype(cfg)``'s file), the dataset against the run's record. Only then ``--restart``
    deletes, the config is recorded and everything seeded. Returns the prepared data."""
    _refuse_restart_of_inputs(cfg, stage, restart, f"`iac stage{stage}`")
    cfg.layout.check_ours()
    check_stages(cfg, _kept_stages(cfg, stage, restart))
    prepared = checked_prepare(cfg, stage, prepare, unet_path=unet(cfg) if unet else None,
                               genotype_path=genotype(cfg) if genotype else None)
    record = _checked_data(cfg)
    _commit(cfg, restart, record)
    record_stage(cfg, stage)
    seed_everything(cfg.seed, cfg.deterministic)
    return prepared


def _finished_training(cfg: ExperimentConfig, stage: int, epochs: int) -> TrainResult | None:
    """The result of a finished Stage I/III run in the stage folder, else ``None``."""
    return _finished_in(cfg.layout.stage(stage), epochs)


def _finished_in(folder: pathlib.Path, epochs: int) -> TrainResult | None:
    """The result of a finished training (Stage I/III, a sweep epoch, a comparison) in
    ``folder``, else ``None``."""
    done = training_done(folder, epochs)
    if done is None:
        return None
    summary, rows = done["summary"], done["history"]
    return TrainResult(run_dir=folder, best_model_path=folder / BEST_MODEL,
                       best_epoch=int(summary["best_epoch"]),
                       best_val_soft_dice=float(summary["best_val_soft_dice"]), history=rows,
                       seconds=0.0, monitor=summary.get("selection_metric", "val_soft_dice"),
                       best_score=float(summary.get("best_score", summary["best_val_soft_dice"])))


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
         f"{prepared.num_slices('val_dt')} val slices -> {cfg.layout.stage(1)}")
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
                             _fixed(prepared.dataset("val_dt", bs)), cfg.stage1, cfg.layout.stage(1),
                             seed=cfg.seed,
                             case_scorer=_case_scorer(prepared, cfg.stage1, cfg.evaluation.batch_size))
    _plot(cfg.layout.stage(1), "Stage I")
    _log(f"Stage I done: best val_dt {result.monitor} (selects the epoch) "
         f"{result.best_score:.4f} at epoch {result.best_epoch}"
         + (" (early stop: stage1.patience)" if result.stopped_early else ""))
    if not result.stopped_early and unconverged(result.best_epoch, cfg.stage1.epochs):
        _log(f"WARNING: Stage I's best epoch ({result.best_epoch}) is in the last 10% of its "
             f"{cfg.stage1.epochs} epochs: the U-Net has probably not converged, so a later gain "
             "of the IAC cannot be told apart from more training. Train longer (stage1.epochs, "
             "stage1.patience) before the search.")
    return result


@_outputs_guarded
def run_stage2(cfg: ExperimentConfig, restart: int | None = None) -> SearchResult:
    """Stage II: search the IAC on the frozen trained U-Net (train_search_dt / val_search_dt)."""
    prepared = _begin(cfg, 2, restart, unet=trained_unet_path)
    layout = cfg.layout
    folder = layout.stage(2)
    if layout.search_done(cfg.stage2.epochs):
        paths = layout.genotype_files()
        _log(f"Stage II: complete ({cfg.stage2.epochs} search epochs, {len(paths)} genotypes in "
             f"{layout.genotypes}), skipped")
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
    _log(f"Stage II done: {len(result.genotype_paths)} genotypes in {layout.genotypes}")
    return result


def stage3_genotype_path(cfg: ExperimentConfig) -> pathlib.Path:
    """``stage3.genotype`` if set, else Stage II's genotype of ``stage3.genotype_epoch`` (default:
    the last epoch searched)."""
    if cfg.stage3.genotype:
        return pathlib.Path(cfg.stage3.genotype)
    layout = cfg.layout
    if cfg.stage3.genotype_epoch is not None:
        path = layout.genotype(cfg.stage3.genotype_epoch)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no genotype for stage3.genotype_epoch={cfg.stage3.genotype_epoch}")
        return path
    paths = layout.genotype_files()
    if not paths:
        raise FileNotFoundError(f"{layout.genotypes}: no genotypes. Run Stage II first or set "
                                "stage3.genotype.")
    return paths[-1]


def stage3_units(cfg: ExperimentConfig) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
    """The Stage III trainings of a run as ``(model name, genotype path, folder)``: one into
    ``stage3/`` (name ``iac``), or with ``stage3.genotype_epochs`` one per epoch into
    ``stage3/epoch_XXX/`` (name ``iac_epoch_XXX``). Every genotype must exist (checked here,
    before anything is trained)."""
    epochs, layout = cfg.stage3.genotype_epochs, cfg.layout
    if not epochs:
        return [("iac", stage3_genotype_path(cfg), layout.stage(3))]
    # (stage3.extra_implant_modes: see run_stage3, one more unit per mode)
    missing = [e for e in epochs if not layout.genotype(e).exists()]
    if missing:
        raise FileNotFoundError(f"stage3.genotype_epochs: no Stage II genotype for epoch(s) "
                                f"{missing} in {layout.genotypes}; nothing was trained")
    return [(f"iac_epoch_{e:03d}", layout.genotype(e), layout.sweep(e)) for e in epochs]


def _stage3_done(cfg: ExperimentConfig, folder: pathlib.Path) -> TrainResult | None:
    done = _finished_in(folder, cfg.stage3.epochs)
    if done is not None and cfg.stage3.export_savedmodel and not (folder / "savedmodel").is_dir():
        return None  # killed between the last epoch and the export
    return done


@_outputs_guarded
def run_stage3(cfg: ExperimentConfig, restart: int | None = None, evaluate_after: bool = True):
    """Stage III: train the discrete IAC of each genotype (one, or the genotype-epoch sweep
    ``stage3.genotype_epochs``) in the frozen U-Net, export it, register it in ``models.json``
    (``iac`` is the run's final IAC U-Net: with a sweep, the epoch chosen by
    ``stage3.select_genotype``; Fig. 6 in ``stage3/genotype_epochs.png``), then (unless
    ``evaluate_after`` is false) evaluate every registered model against the U-Net. Finished
    units are skipped, an interrupted one resumes. Returns ``{model name: TrainResult}``."""
    # pre-flight (U-Net against the data, every genotype file) before the run folder is written
    prepared = _begin(cfg, 3, restart, unet=trained_unet_path,
                      genotype=lambda c: [geno for _, geno, _ in stage3_units(c)])
    units = stage3_units(cfg)  # every genotype checked before anything is trained
    unet_path = trained_unet_path(cfg)
    layout = cfg.layout
    layout.register_model("unet", unet_path)
    results = {}
    scorer = _case_scorer(prepared, cfg.stage3, cfg.evaluation.batch_size)
    runs = [(name, geno, folder, cfg.stage3.implant_mode) for name, geno, folder in units]
    runs += [(f"iac_{mode}", units[0][1] if len(units) == 1 else stage3_genotype_path(cfg),
              compare_dir(cfg, f"iac_{mode}"), mode) for mode in cfg.stage3.extra_implant_modes]
    for name, geno_path, folder, mode in runs:
        result = _stage3_done(cfg, folder)
        if result is not None:
            _log(f"Stage III {name}: complete (best val_dt soft Dice {result.best_val_soft_dice:.4f}, "
                 f"epoch {result.best_epoch}), skipped")
        else:
            genotype = Genotype.from_json(geno_path)
            _log(f"Stage III {name} ({mode} implant, epoch selection by val_dt {cfg.stage3.monitor}"
                 f"{', epoch 0 included' if cfg.stage3.evaluate_initial else ''}): genotype "
                 f"{geno_path} -> {folder}\n{genotype}")
            seed_everything(cfg.seed, cfg.deterministic)
            with precision_policy(cfg.stage3.mixed_precision):
                unet = load_unet(unet_path)
                bs = cfg.stage3.batch_size
                result = train_iac_unet(unet, genotype, _epoch_data(prepared, "train_dt", bs),
                                        _fixed(prepared.dataset("val_dt", bs)), cfg.stage3,
                                        folder, seed=cfg.seed, case_scorer=scorer,
                                        implant_mode=mode,
                                        search_cell_channels=cfg.stage2.cell_channels)
            _plot(folder, f"Stage III ({name})")
            _log(f"Stage III {name} done in {result.seconds:.1f} s: best val_dt {result.monitor} "
                 f"(selects the epoch) {result.best_score:.4f} at epoch {result.best_epoch}")
        layout.register_model(name, layout.best_model(folder))
        results[name] = result
    if cfg.evaluation.unet_continued:
        results["unet_continued"] = run_unet_continued(cfg, prepared)
    if cfg.stage3.genotype_epochs:
        sweep = {n: r for n, r in results.items() if n.startswith("iac_epoch_")}
        final = select_genotype(cfg, {n: r.best_score for n, r in sweep.items()})
        layout.register_model("iac", layout.best_model(layout.sweep(final)))
        atomic_write_json(layout.stage(3) / "selected_genotype.json", {
            "rule": cfg.stage3.select_genotype, "epoch": final, "metric": cfg.stage3.monitor,
            "best_val_score": {n: r.best_score for n, r in sweep.items()},
            "best_val_soft_dice": {n: r.best_val_soft_dice for n, r in sweep.items()}})
        plot_genotype_epochs({e: layout.sweep(e) / HISTORY for e in cfg.stage3.genotype_epochs},
                             layout.stage(3) / "genotype_epochs.png")
        _log(f"Stage III: the genotype of epoch {final} is the run's IAC U-Net "
             f"(select_genotype: {cfg.stage3.select_genotype}); Fig. 6 curves in "
             f"{layout.stage(3) / 'genotype_epochs.png'}")
    if evaluate_after:
        _evaluate(cfg, prepared)
    return results


def select_genotype(cfg: ExperimentConfig, best_val: dict[str, float]) -> int:
    """The sweep epoch whose Stage III is the run's final IAC U-Net (``stage3.select_genotype``):
    ``best_val`` the best val_dt score of the selection metric ``stage3.monitor`` (ties: the
    earlier epoch), ``last`` the last listed. ``best_val``: ``iac_epoch_XXX`` -> that score."""
    epochs = list(cfg.stage3.genotype_epochs)
    if cfg.stage3.select_genotype == "last":
        return epochs[-1]
    scores = [best_val[f"iac_epoch_{e:03d}"] for e in epochs]
    return epochs[max(range(len(epochs)), key=lambda i: (scores[i], -i))]


def compare_dir(cfg: ExperimentConfig, method: str) -> pathlib.Path:
    return cfg.layout.compare(method)


def run_unet_continued(cfg: ExperimentConfig, prepared=None) -> TrainResult:
    """The budget-matched baseline (issue 11, not in the paper): the trained U-Net trained further
    from its best checkpoint for as many epochs as Stage III (``stage3.epochs``), with Stage III's
    optimiser, batch, selection metric and epoch 0, into ``compare/unet_continued/``, registered
    as ``unet_continued``. A finished run is skipped."""
    import dataclasses

    folder = compare_dir(cfg, "unet_continued")
    s3 = cfg.stage3
    done = _finished_in(folder, s3.epochs)
    if done is not None:
        _log(f"unet_continued: complete (best val_dt {done.monitor} {done.best_score:.4f}, "
             f"epoch {done.best_epoch}), skipped")
        cfg.layout.register_model("unet_continued", folder / BEST_MODEL)
        return done
    if prepared is None:
        prepared = prepare(cfg)
    train_cfg = Stage1Config(**{f.name: getattr(s3, f.name) for f in dataclasses.fields(Stage1Config)})
    unet_path = trained_unet_path(cfg)
    _log(f"unet_continued (budget-matched baseline): {s3.epochs} more epochs of {unet_path}, "
         f"selection by val_dt {s3.monitor} -> {folder}")
    seed_everything(cfg.seed, cfg.deterministic)
    with precision_policy(s3.mixed_precision):
        model = load_unet(unet_path)
        bs = s3.batch_size
        result = train_model(model, _epoch_data(prepared, "train_dt", bs),
                             _fixed(prepared.dataset("val_dt", bs)), train_cfg, folder,
                             seed=cfg.seed,
                             case_scorer=_case_scorer(prepared, s3, cfg.evaluation.batch_size))
    _plot(folder, "unet_continued")
    cfg.layout.register_model("unet_continued", folder / BEST_MODEL)
    _log(f"unet_continued done: best val_dt {result.monitor} {result.best_score:.4f} at epoch "
         f"{result.best_epoch}")
    return result


def run_compare(cfg: ExperimentConfig, restart: int | None = None, evaluate_after: bool = True):
    """Train each comparison method of the run (``method`` if not ``iac``, then ``compare``) on
    the same frozen U-Net, splits and Stage III training settings, into ``compare/<method>/``
    (its resolved config in ``config.yaml``), register each in ``models.json``, then (unless
    ``evaluate_after`` is false) evaluate. Finished ones are skipped, an interrupted one resumes.
    Returns ``{method: TrainResult}``."""
    _refuse_restart_of_inputs(cfg, 2, restart, "`iac compare`")  # reads Stage I's U-Net
    cfg.layout.check_ours()
    check_stages(cfg, _kept_stages(cfg, 1, restart))
    if not cfg.comparisons:
        _log("no comparison method configured (set `compare: [attention, ...]`)")
        return {}
    unet_path = trained_unet_path(cfg)
    # the same pre-flight checks as Stages II/III (folders, the U-Net against the data), before
    # anything is written or deleted
    prepared = checked_prepare(cfg, 3, prepare, unet_path=unet_path)
    _commit(cfg, restart, _checked_data(cfg))
    cfg.layout.register_model("unet", unet_path)
    results = {}
    for method in cfg.comparisons:
        folder = compare_dir(cfg, method)
        result = _finished_in(folder, cfg.stage3.epochs)
        if result is not None:
            _log(f"comparison {method}: complete (best val_dt soft Dice "
                 f"{result.best_val_soft_dice:.4f}, epoch {result.best_epoch}), skipped")
        else:
            _log(f"comparison {method}: its modules in the frozen U-Net {unet_path} -> {folder}")
            folder.mkdir(parents=True, exist_ok=True)
            dump_yaml(cfg, folder / "config.yaml")
            seed_everything(cfg.seed, cfg.deterministic)
            with precision_policy(cfg.stage3.mixed_precision):
                unet = load_unet(unet_path)
                bs = cfg.stage3.batch_size
                result = train_comparison(unet, method, _epoch_data(prepared, "train_dt", bs),
                                          _fixed(prepared.dataset("val_dt", bs)), cfg.stage3,
                                          folder, seed=cfg.seed,
                                          case_scorer=_case_scorer(prepared, cfg.stage3,
                                                                   cfg.evaluation.batch_size))
            _plot(folder, f"comparison: {method}")
            _log(f"comparison {method} done in {result.seconds:.1f} s: best val_dt soft Dice "
                 f"{result.best_val_soft_dice:.4f} at epoch {result.best_epoch}")
        cfg.layout.register_model(method, folder / BEST_MODEL)
        results[method] = result
    if evaluate_after:
        _evaluate(cfg, prepared)
    return results


def evaluation_models(cfg: ExperimentConfig) -> dict[str, pathlib.Path]:
    """The models the evaluation compares with the U-Net, in table order: ``iac``, the sweep's
    ``iac_epoch_XXX``, the configured comparisons, then anything else registered."""
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


@_outputs_guarded
def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice of the U-Net and of every model registered in ``models.json`` (the IAC
    U-Net, the sweep's epochs, the comparisons) on ``evaluation.split``, each compared with the
    U-Net (``prepared``: the already prepared data, if the caller has it). Stops with
    :class:`~iac_tf.run_records.RunConflict` if the stage folders hold another config's results."""
    cfg.layout.check_ours()
    check_stages(cfg, _used_stages(cfg, 3 if cfg.method == "iac" else 1))
    _checked_data(cfg)
    return _evaluate(cfg, prepared)


def _evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    models = evaluation_models(cfg)
    if not models:
        raise FileNotFoundError(f"{cfg.run_dir / 'models.json'}: no trained model to evaluate; "
                                "run Stage III (`iac stage3`) or the comparisons (`iac compare`) first")
    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    loaded = {"unet": load_unet(trained_unet_path(cfg))}
    loaded.update({name: load_unet(path) for name, path in models.items()})
    out_dir = cfg.layout.evaluation
    # the IAC (every mode) against the budget-matched baseline too (issue 11)
    pairs = [("unet_continued", n) for n in loaded if n.startswith("iac") and "unet_continued" in loaded]
    report = evaluate_models(loaded, images, masks, case_ids, prepared.class_names, out_dir,
                             batch_size=cfg.evaluation.batch_size, pairs=pairs)
    _log(f"per-case Dice on {cfg.evaluation.split} ({report['split_cases']} cases; "
         f"{out_dir / 'dice_table.md'}):\n{markdown_table(report)}")
    report["volumetric"] = _volumetric(cfg, prepared, loaded)
    return report


def _volumetric(cfg: ExperimentConfig, prepared, models: dict):
    """Dice and HD95 (mm) of whole predicted volumes of ``evaluation.split`` (issue 10)."""
    from iac_tf.inference.run_scores import volumetric_scores

    return volumetric_scores(cfg, prepared, models, batch_size=cfg.evaluation.batch_size)


@_outputs_guarded
def run_all(cfg: ExperimentConfig, restart: int | None = None) -> None:
    """Stages I (unless ``unet.pretrained`` is set), II and III (if ``method`` is ``iac``), the
    comparison methods, then the evaluation. All stage records are compared before any stage
    starts; finished parts are skipped."""
    last = 3 if cfg.method == "iac" else 1
    cfg.layout.check_ours()
    check_stages(cfg, _kept_stages(cfg, last, restart))
    if restart is not None:  # check what the first stage to run needs, then delete
        _restart_preflight(cfg, restart)
        _commit(cfg, restart, _checked_data(cfg))
    if not cfg.unet.pretrained:
        run_stage1(cfg)
    if cfg.method == "iac":
        run_stage2(cfg)
        run_stage3(cfg, evaluate_after=False)
    run_compare(cfg, evaluate_after=False)
    _evaluate(cfg)


def _restart_preflight(cfg: ExperimentConfig, restart: int) -> None:
    """The pre-flight checks of the first stage ``iac run --restart stageR`` runs, before
    anything is deleted: Stage I's (folders, backbone, data) when it retrains the U-Net, else
    the trained U-Net against the data (and Stage III's genotypes when they are kept)."""
    if restart == 1 and not cfg.unet.pretrained:
        checked_prepare(cfg, 1, prepare)
        return
    stage = 3 if cfg.method != "iac" else max(restart, 2)
    genotypes = ([g for _, g, _ in stage3_units(cfg)]
                 if stage == 3 and cfg.method == "iac" else None)
    checked_prepare(cfg, stage, prepare, unet_path=trained_unet_path(cfg), genotype_path=genotypes)


def _plot(stage_dir: pathlib.Path, title: str) -> None:
    history = stage_dir / HISTORY
    if history.exists():
        plot_history(history, stage_dir / "learning_curves.png", title=title)
