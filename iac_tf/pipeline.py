"""The three stages as Python calls over one :class:`~iac_tf.experiment.ExperimentConfig`
(what the ``iac`` CLI and the notebooks use)::

    from iac_tf.experiment import load_experiment
    from iac_tf import pipeline
    cfg = load_experiment("experiments/sample.yaml")
    pipeline.run_stage1(cfg); pipeline.run_stage2(cfg); pipeline.run_stage3(cfg)
    pipeline.run_compare(cfg)       # the comparison methods of `compare:` (compare/<method>/)
    pipeline.evaluate(cfg)          # every model of models.json against the U-Net

The run folder's layout is `iac_tf.run_layout`.
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
    from iac_tf.training.stage1 import train_model
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
        result = train_model(model, train, val, cfg.stage1, cfg.stage_dir(1))
    _plot(cfg.stage_dir(1), "Stage I")
    _log(f"Stage I done: best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}")
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
        return _genotype_of_epoch(cfg, cfg.stage3.genotype_epoch, "stage3.genotype_epoch")
    paths = sorted(gdir.glob("epoch_*.json"))
    if not paths:
        raise FileNotFoundError(f"{gdir}: no genotypes. Run Stage II first or set stage3.genotype.")
    return paths[-1]


def _genotype_of_epoch(cfg: ExperimentConfig, epoch: int, key: str) -> pathlib.Path:
    path = cfg.stage_dir(2) / "genotypes" / f"epoch_{epoch:03d}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no genotype for {key}={epoch} (Stage II has not written it; "
                                f"its genotypes are in {path.parent})")
    return path


def stage3_units(cfg: ExperimentConfig) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
    """The Stage III trainings of a run as ``(model name, genotype path, folder)``: one into
    ``stage3/`` (name ``iac``), or with ``stage3.genotype_epochs`` one per epoch into
    ``stage3/epoch_XXX/`` (name ``iac_epoch_XXX``). Every genotype must exist (checked here,
    before anything is trained)."""
    epochs = cfg.stage3.genotype_epochs
    if not epochs:
        return [("iac", stage3_genotype_path(cfg), cfg.stage_dir(3))]
    missing = [e for e in epochs if not (cfg.stage_dir(2) / "genotypes" / f"epoch_{e:03d}.json").exists()]
    if missing:
        raise FileNotFoundError(
            f"stage3.genotype_epochs: no Stage II genotype for epoch(s) {missing} in "
            f"{cfg.stage_dir(2) / 'genotypes'}; nothing was trained")
    return [(f"iac_epoch_{e:03d}", _genotype_of_epoch(cfg, e, "stage3.genotype_epochs"),
             cfg.stage_dir(3) / f"epoch_{e:03d}") for e in epochs]


def _stage3_done(cfg: ExperimentConfig, folder: pathlib.Path) -> bool:
    from iac_tf.training.stage3 import finished

    return finished(folder, cfg.stage3.epochs) and (
        not cfg.stage3.export_savedmodel or (folder / "savedmodel" / "saved_model.pb").exists())


def run_stage3(cfg: ExperimentConfig, evaluate_after: bool = True):
    """Stage III: train the discrete IAC of each genotype (one, or the genotype-epoch sweep) in
    the frozen U-Net, export it, register it in ``models.json`` (``iac`` is the run's final IAC
    U-Net: with a sweep the epoch chosen by ``stage3.select_genotype``), and (unless
    ``evaluate_after`` is false) evaluate every registered model against the U-Net.

    A unit that finished in an earlier session is not trained again; an interrupted one resumes.
    """
    import time

    from iac_tf.genotype import Genotype
    from iac_tf.run_layout import register_model
    from iac_tf.training.stage1 import BEST_MODEL
    from iac_tf.training.stage3 import train_iac_unet

    write_resolved(cfg)
    units = stage3_units(cfg)  # every genotype checked before anything runs
    seed_everything(cfg.seed, cfg.deterministic)
    prepared = prepare(cfg)
    unet_path = trained_unet_path(cfg)
    register_model(cfg.run_dir, "unet", unet_path)
    results = {}
    for name, geno_path, folder in units:
        if _stage3_done(cfg, folder):
            _log(f"Stage III {name}: finished earlier, kept ({folder})")
        else:
            genotype = Genotype.from_json(geno_path)
            _log(f"Stage III {name}: genotype {geno_path} -> {folder}\n{genotype}")
            seed_everything(cfg.seed, cfg.deterministic)
            t0 = time.perf_counter()
            with precision_policy(cfg.stage3.mixed_precision):
                unet = load_unet(unet_path)
                train, val = _train_val(prepared, cfg.stage3.batch_size, cfg.seed, cfg.stage3.shuffle)
                train_iac_unet(unet, genotype, train, val, cfg.stage3, folder)
            _log(f"Stage III {name}: {time.perf_counter() - t0:.1f} s")
            _plot(folder, f"Stage III ({name})")
        register_model(cfg.run_dir, name, folder / BEST_MODEL)
        results[name] = _summary(folder)
    if cfg.stage3.genotype_epochs:
        final = select_genotype(cfg, results)
        register_model(cfg.run_dir, "iac", cfg.stage_dir(3) / f"epoch_{final:03d}" / BEST_MODEL)
        from iac_tf.evaluation.plots import plot_genotype_epochs
        from iac_tf.training.runs import atomic_write_json

        atomic_write_json(cfg.stage_dir(3) / "selected_genotype.json", {
            "rule": cfg.stage3.select_genotype, "epoch": final,
            "best_val_dice": {name: r["best_val_dice"] for name, r in results.items()}})
        plot_genotype_epochs({e: cfg.stage_dir(3) / f"epoch_{e:03d}" / "history.csv"
                              for e in cfg.stage3.genotype_epochs},
                             cfg.stage_dir(3) / "genotype_epochs.png")
        _log(f"Stage III: genotype of epoch {final} selected ({cfg.stage3.select_genotype}); "
             f"Fig. 6 curves in {cfg.stage_dir(3) / 'genotype_epochs.png'}")
    if evaluate_after:
        _log_report(evaluate(cfg, prepared), cfg)
    return results


def select_genotype(cfg: ExperimentConfig, results: dict) -> int:
    """The sweep epoch whose Stage III is the run's final IAC U-Net (``stage3.select_genotype``):
    ``best_val`` the best val_dt Dice (ties: the earlier epoch), ``last`` the last listed."""
    epochs = list(cfg.stage3.genotype_epochs)
    if cfg.stage3.select_genotype == "last":
        return epochs[-1]
    scores = [results[f"iac_epoch_{e:03d}"]["best_val_dice"] for e in epochs]
    return epochs[max(range(len(epochs)), key=lambda i: (scores[i], -i))]


def _summary(folder: pathlib.Path) -> dict:
    import json

    return json.loads((folder / "summary.json").read_text())


def compare_dir(cfg: ExperimentConfig, method: str) -> pathlib.Path:
    return cfg.run_dir / "compare" / method


def run_compare(cfg: ExperimentConfig, evaluate_after: bool = True):
    """Train each comparison method of the run (``method`` if not ``iac``, and ``compare``) on
    the same frozen U-Net and splits as Stage III, into ``compare/<method>/``, register each in
    ``models.json``, and (unless ``evaluate_after`` is false) evaluate. Finished ones are kept."""
    import time

    from iac_tf.run_layout import register_model
    from iac_tf.training.stage1 import BEST_MODEL
    from iac_tf.training.stage3 import finished, train_comparison

    write_resolved(cfg)
    if not cfg.comparisons:
        _log("no comparison methods configured (set `compare: [attention, ...]`)")
        return {}
    seed_everything(cfg.seed, cfg.deterministic)
    prepared = prepare(cfg)
    unet_path = trained_unet_path(cfg)
    register_model(cfg.run_dir, "unet", unet_path)
    results = {}
    for method in cfg.comparisons:
        folder = compare_dir(cfg, method)
        if finished(folder, cfg.stage3.epochs):
            _log(f"comparison {method}: finished earlier, kept ({folder})")
        else:
            _log(f"comparison {method}: training its modules in the frozen U-Net -> {folder}")
            seed_everything(cfg.seed, cfg.deterministic)
            t0 = time.perf_counter()
            with precision_policy(cfg.stage3.mixed_precision):
                unet = load_unet(unet_path)
                train, val = _train_val(prepared, cfg.stage3.batch_size, cfg.seed, cfg.stage3.shuffle)
                train_comparison(unet, method, train, val, cfg.stage3, folder)
            _log(f"comparison {method}: {time.perf_counter() - t0:.1f} s")
            _plot(folder, f"comparison: {method}")
        register_model(cfg.run_dir, method, folder / BEST_MODEL)
        results[method] = _summary(folder)
    if evaluate_after:
        _log_report(evaluate(cfg, prepared), cfg)
    return results


def evaluation_models(cfg: ExperimentConfig) -> dict[str, pathlib.Path]:
    """The models the evaluation compares with the U-Net, in table order: ``iac``, the sweep's
    ``iac_epoch_XXX``, the configured comparisons, then anything else registered."""
    from iac_tf.run_layout import model_paths

    registered = {k: v for k, v in model_paths(cfg.run_dir).items() if k != "unet"}
    legacy = cfg.stage_dir(3) / "best_model.keras"  # a run folder from before models.json
    if "iac" not in registered and legacy.exists():
        registered["iac"] = legacy
    order = ["iac"] + sorted(k for k in registered if k.startswith("iac_epoch_")) + list(cfg.comparisons)
    names = [k for k in order if k in registered] + sorted(k for k in registered if k not in order)
    return {k: registered[k] for k in names}


def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice of the U-Net and every model registered in ``models.json`` (the IAC U-Net,
    the sweep's epochs, the comparisons) on ``evaluation.split``; tables and statistics of each
    against the U-Net in ``evaluation/`` (``prepared``: the already prepared data, if any)."""
    import iac_tf.comparisons  # noqa: F401  (registers the comparison modules for loading)
    import iac_tf.search  # noqa: F401  (registers the cells for loading)
    from iac_tf.evaluation.report import evaluate_models

    models = evaluation_models(cfg)
    if not models:
        raise FileNotFoundError(f"{cfg.run_dir / 'models.json'}: no trained model to evaluate; "
                                "run Stage III (`iac stage3`) or the comparisons (`iac compare`) first")
    if prepared is None:
        prepared = prepare(cfg)
    images, masks, case_ids = prepared.arrays(cfg.evaluation.split)
    loaded = {"unet": load_unet(trained_unet_path(cfg))}
    loaded.update({name: load_unet(path) for name, path in models.items()})
    return evaluate_models(loaded, images, masks, case_ids, prepared.class_names,
                           cfg.run_dir / "evaluation", batch_size=cfg.evaluation.batch_size)


def _log_report(report: dict, cfg: ExperimentConfig) -> None:
    parts = [f"U-Net {report['mean_dice']['unet']:.4f}"]
    parts += [f"{name} {value:.4f}" for name, value in report["mean_dice"].items() if name != "unet"]
    _log(f"per-case Dice on {cfg.evaluation.split}: " + ", ".join(parts)
         + f"; tables in {cfg.run_dir / 'evaluation'}")


def run_all(cfg: ExperimentConfig) -> None:
    """Stages I (unless ``unet.pretrained`` is set), II and III (if ``method`` is ``iac``), the
    comparisons, then the evaluation. Rerunning resumes: finished parts are kept."""
    if not cfg.unet.pretrained:
        run_stage1(cfg)
    if cfg.method == "iac":
        run_stage2(cfg)
        run_stage3(cfg, evaluate_after=False)
    run_compare(cfg, evaluate_after=False)
    _log_report(evaluate(cfg), cfg)


def _plot(stage_dir: pathlib.Path, title: str) -> None:
    from iac_tf.evaluation.plots import plot_history

    history = stage_dir / "history.csv"
    if history.exists():
        plot_history(history, stage_dir / "learning_curves.png", title=title)
