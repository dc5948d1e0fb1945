"""The three stages as Python calls over one :class:`~iac_tf.experiment.ExperimentConfig`
(what the ``iac`` CLI and the notebooks use)::

    from iac_tf.experiment import load_experiment
    from iac_tf import pipeline
    cfg = load_experiment("experiments/sample.yaml")
    pipeline.run_stage1(cfg); pipeline.run_stage2(cfg); pipeline.run_stage3(cfg)
"""

from __future__ import annotations

import pathlib

from iac_tf.experiment import ExperimentConfig, write_resolved
from iac_tf.training.common import epoch_seed, load_unet, precision_policy, seed_everything


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


def _case_scorer(prepared, train_cfg, batch_size: int = 32):
    """``model -> per-case hard Dice on val_dt`` when ``train_cfg.monitor`` needs it, else None."""
    if getattr(train_cfg, "monitor", "val_dice") != "val_case_dice":
        return None
    import numpy as np

    from iac_tf.evaluation.metrics import mean_case_dice

    images, masks, case_ids = prepared.arrays("val_dt")

    def score(model) -> float:
        probs = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float32)
        return mean_case_dice(masks, probs, case_ids)

    return score


def _register(cfg: ExperimentConfig, name: str, path) -> None:
    from iac_tf.run_layout import register_model

    register_model(cfg.run_dir, name, path)


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


def run_stage1(cfg: ExperimentConfig):
    """Stage I: build the configured U-Net and train it on train_dt (best by val_dt Dice)."""
    from iac_tf.training.stage1 import train_model, unconverged
    from iac_tf.unets import build_unet

    write_resolved(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    prepared = prepare(cfg)
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
        result = train_model(model, train, val, cfg.stage1, cfg.stage_dir(1),
                             case_scorer=_case_scorer(prepared, cfg.stage1, cfg.evaluation.batch_size))
    _plot(cfg.stage_dir(1), "Stage I")
    _register(cfg, "unet", result.best_model_path)
    _log(f"Stage I done: best {result.monitor} {result.best_val_dice:.4f} at epoch {result.best_epoch}"
         + (" (early stop)" if result.stopped_early else ""))
    if not result.stopped_early and unconverged(result.best_epoch, cfg.stage1.epochs):
        _log(f"WARNING: Stage I's best epoch ({result.best_epoch}) is in the last 10% of its "
             f"{cfg.stage1.epochs} epochs: the U-Net has probably not converged, so a later gain "
             "of the IAC cannot be told apart from more training. Train longer (stage1.epochs, "
             "stage1.patience) before the search.")
    return result


def run_stage2(cfg: ExperimentConfig):
    """Stage II: search the IAC on the frozen trained U-Net (train_search_dt / val_search_dt)."""
    from iac_tf.training.stage2 import search

    write_resolved(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    prepared = prepare(cfg)
    unet_path = trained_unet_path(cfg)
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


def run_stage3(cfg: ExperimentConfig):
    """Stage III: train the discrete IAC in the frozen U-Net, export it, and compare it with the
    U-Net on the evaluation split (Dice table, tests of significance, plots)."""
    from iac_tf.genotype import Genotype
    from iac_tf.training.stage3 import train_iac_unet

    write_resolved(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    prepared = prepare(cfg)
    unet_path = trained_unet_path(cfg)
    geno_path = stage3_genotype_path(cfg)
    genotype = Genotype.from_json(geno_path)
    s3 = cfg.stage3
    scorer = _case_scorer(prepared, s3, cfg.evaluation.batch_size)
    runs = [(s3.implant_mode, cfg.stage_dir(3), "iac")]
    runs += [(mode, cfg.run_dir / "compare" / f"iac_{mode}", f"iac_{mode}")
             for mode in s3.extra_implant_modes]
    results = {}
    for mode, run_dir, name in runs:
        seed_everything(cfg.seed, cfg.deterministic)
        _log(f"Stage III ({mode}, selection by {s3.monitor}"
             f"{', epoch 0 included' if s3.evaluate_initial else ''}): genotype {geno_path} -> "
             f"{run_dir}\n{genotype}")
        with precision_policy(s3.mixed_precision):
            unet = load_unet(unet_path)
            train, val = _train_val(prepared, s3.batch_size, cfg.seed, s3.shuffle)
            results[name] = train_iac_unet(unet, genotype, train, val, s3, run_dir,
                                           case_scorer=scorer, implant_mode=mode,
                                           search_cell_channels=cfg.stage2.cell_channels)
        _plot(run_dir, f"Stage III ({mode})")
        _register(cfg, name, results[name].best_model_path)
    if cfg.evaluation.unet_continued:
        run_unet_continued(cfg, prepared)
    report = evaluate(cfg, prepared)
    result = results["iac"]
    _log(f"Stage III done: best {result.monitor} {result.best_val_dice:.4f} (epoch {result.best_epoch})")
    _log(f"per-case Dice on {cfg.evaluation.split}: U-Net {report['overall']['mean_baseline']:.4f}; "
         + "; ".join(f"{n} {s['overall']['mean_candidate']:.4f}" for n, s in report["methods"].items())
         + f"; tables in {cfg.run_dir / 'evaluation'}")
    return result


def unet_continued_dir(cfg: ExperimentConfig) -> pathlib.Path:
    return cfg.run_dir / "compare" / "unet_continued"


def run_unet_continued(cfg: ExperimentConfig, prepared=None):
    """The budget-matched baseline (issue 11, not in the paper): the trained U-Net trained further
    from its best checkpoint for as many epochs as Stage III, with Stage III's optimiser, batch,
    selection metric and epoch 0, into ``compare/unet_continued/`` (registered as
    ``unet_continued``)."""
    import dataclasses

    from iac_tf.training.stage1 import Stage1Config, train_model

    if prepared is None:
        prepared = prepare(cfg)
    s3 = cfg.stage3
    train_cfg = Stage1Config(**{f.name: getattr(s3, f.name) for f in dataclasses.fields(Stage1Config)})
    run_dir = unet_continued_dir(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    _log(f"U-Net continued: {s3.epochs} more epochs of {trained_unet_path(cfg)} "
         f"(selection by {s3.monitor}) -> {run_dir}")
    with precision_policy(s3.mixed_precision):
        model = load_unet(trained_unet_path(cfg))
        train, val = _train_val(prepared, s3.batch_size, cfg.seed, s3.shuffle)
        result = train_model(model, train, val, train_cfg, run_dir,
                             case_scorer=_case_scorer(prepared, s3, cfg.evaluation.batch_size))
    _plot(run_dir, "U-Net continued")
    _register(cfg, "unet_continued", result.best_model_path)
    return result


def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice on ``evaluation.split`` of the U-Net, the Stage III IAC U-Net, the IAC in
    the ``stage3.extra_implant_modes`` and ``unet_continued`` (where trained), each compared with
    the U-Net, and the IAC also with ``unet_continued`` (``prepared``: the already prepared data,
    if the caller has it)."""
    import iac_tf.implant  # noqa: F401  (registers ResidualImplant for loading)
    import iac_tf.search  # noqa: F401  (registers the cells for loading)
    from iac_tf.evaluation.report import evaluate_models
    from iac_tf.training.stage1 import BEST_MODEL

    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    paths = {"unet": trained_unet_path(cfg), "iac": cfg.stage_dir(3) / BEST_MODEL}
    for mode in cfg.stage3.extra_implant_modes:
        paths[f"iac_{mode}"] = cfg.run_dir / "compare" / f"iac_{mode}" / BEST_MODEL
    if cfg.evaluation.unet_continued:
        paths["unet_continued"] = unet_continued_dir(cfg) / BEST_MODEL
    missing = [str(p) for p in paths.values() if not pathlib.Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"models to evaluate not found: {missing}; run Stage III first")
    models = {name: load_unet(path) for name, path in paths.items()}
    pairs = [("unet_continued", n) for n in paths if n.startswith("iac") and "unet_continued" in paths]
    return evaluate_models(models, images, masks, case_ids, prepared.class_names,
                           cfg.run_dir / "evaluation", baseline="unet", main="iac", pairs=pairs,
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
