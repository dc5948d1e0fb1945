"""The three stages as Python calls over one :class:`~iac_tf.experiment.ExperimentConfig`
(what the ``iac`` CLI and the notebooks use)::

    from iac_tf.experiment import load_experiment
    from iac_tf import pipeline
    cfg = load_experiment("experiments/sample.yaml")
    pipeline.run_stage1(cfg); pipeline.run_stage2(cfg); pipeline.run_stage3(cfg)
"""

from __future__ import annotations

import functools
import pathlib

from iac_tf.diskspace import disk_full_guard
from iac_tf.experiment import ExperimentConfig, write_resolved
from iac_tf.preflight import checked_prepare
from iac_tf.training.common import epoch_seed, load_unet, precision_policy, seed_everything


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
    from iac_tf.data import prepare_dataset

    return prepare_dataset(cfg.data, progress=True)


def _train_val(prepared, batch_size: int, seed: int, shuffle: bool):
    def train(epoch: int):
        return prepared.dataset("train_dt", batch_size, shuffle=shuffle, seed=epoch_seed(seed, epoch))

    val = prepared.dataset("val_dt", batch_size, shuffle=False)
    return train, (lambda epoch: val)


def stage1_model_path(cfg: ExperimentConfig) -> pathlib.Path:
    from iac_tf.training.stage1 import BEST_MODEL

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


@_outputs_guarded
def run_stage1(cfg: ExperimentConfig):
    """Stage I: build the configured U-Net and train it on train_dt (best by val_dt Dice)."""
    from iac_tf.training.stage1 import train_model
    from iac_tf.unets import build_unet

    prepared = checked_prepare(cfg, 1, prepare)  # pre-flight: nothing written before it
    write_resolved(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
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
        train, val = _train_val(prepared, cfg.stage1.batch_size, cfg.seed, cfg.stage1.shuffle)
        result = train_model(model, train, val, cfg.stage1, cfg.stage_dir(1))
    _plot(cfg.stage_dir(1), "Stage I")
    _log(f"Stage I done: best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}")
    return result


@_outputs_guarded
def run_stage2(cfg: ExperimentConfig):
    """Stage II: search the IAC on the frozen trained U-Net (train_search_dt / val_search_dt)."""
    from iac_tf.training.stage2 import search

    unet_path = trained_unet_path(cfg)
    prepared = checked_prepare(cfg, 2, prepare, unet_path=unet_path)
    write_resolved(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    bs = cfg.stage2.batch_size
    _log(f"Stage II: searching on {unet_path} with {prepared.num_slices('train_search_dt')} / "
         f"{prepared.num_slices('val_search_dt')} search slices -> {cfg.stage_dir(2)}")
    from iac_tf._keras import tf

    strategy = (tf.distribute.MirroredStrategy() if cfg.stage2.distribute == "mirrored"
                else tf.distribute.get_strategy())
    with precision_policy(cfg.stage2.mixed_precision):
        with strategy.scope():
            unet = load_unet(unet_path)
        result = search(
            unet,
            lambda e, s: prepared.dataset("train_search_dt", bs, shuffle=cfg.stage2.shuffle, seed=s),
            lambda e, s: prepared.dataset("val_search_dt", bs, shuffle=cfg.stage2.shuffle, seed=s),
            cfg.stage2, cfg.stage_dir(2), seed=cfg.seed, strategy=strategy,
        )
    _log(f"Stage II done: {len(result.genotype_paths)} genotypes in {cfg.stage_dir(2) / 'genotypes'}")
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
def run_stage3(cfg: ExperimentConfig):
    """Stage III: train the discrete IAC in the frozen U-Net, export it, and compare it with the
    U-Net on the evaluation split (Dice table, tests of significance, plots)."""
    from iac_tf.genotype import Genotype
    from iac_tf.training.stage3 import train_iac_unet

    unet_path = trained_unet_path(cfg)
    geno_path = stage3_genotype_path(cfg)
    prepared = checked_prepare(cfg, 3, prepare, unet_path=unet_path, genotype_path=geno_path)
    genotype = Genotype.from_json(geno_path)
    write_resolved(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    _log(f"Stage III: genotype {geno_path} -> {cfg.stage_dir(3)}\n{genotype}")
    with precision_policy(cfg.stage3.mixed_precision):
        unet = load_unet(unet_path)
        train, val = _train_val(prepared, cfg.stage3.batch_size, cfg.seed, cfg.stage3.shuffle)
        result = train_iac_unet(unet, genotype, train, val, cfg.stage3, cfg.stage_dir(3))
    _plot(cfg.stage_dir(3), "Stage III")
    report = evaluate(cfg, prepared)
    overall = report["overall"]
    _log(f"Stage III done: best val Dice {result.best_val_dice:.4f} (epoch {result.best_epoch}); "
         f"per-case Dice on {cfg.evaluation.split}: U-Net {overall['mean_baseline']:.4f} -> "
         f"IAC {overall['mean_candidate']:.4f}; tables in {cfg.run_dir / 'evaluation'}")
    return result


@_outputs_guarded
def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice of the U-Net and the Stage III IAC U-Net on ``evaluation.split``
    (``prepared``: the already prepared data, if the caller has it)."""
    import iac_tf.search  # noqa: F401  (registers the cells for loading)
    from iac_tf.evaluation.report import evaluate_pair
    from iac_tf.training.stage1 import BEST_MODEL

    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    baseline = load_unet(trained_unet_path(cfg))
    candidate = load_unet(cfg.stage_dir(3) / BEST_MODEL)
    return evaluate_pair(baseline, candidate, images, masks, case_ids, prepared.class_names,
                         cfg.run_dir / "evaluation", names=("unet", "iac"),
                         batch_size=cfg.evaluation.batch_size)


def run_all(cfg: ExperimentConfig) -> None:
    """Stages I (unless ``unet.pretrained`` is set), II and III."""
    if not cfg.unet.pretrained:
        run_stage1(cfg)
    run_stage2(cfg)
    run_stage3(cfg)


def _plot(stage_dir: pathlib.Path, title: str) -> None:
    from iac_tf.evaluation.plots import plot_history

    history = stage_dir / "history.csv"
    if history.exists():
        plot_history(history, stage_dir / "learning_curves.png", title=title)
