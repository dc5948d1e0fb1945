"""The stage commands: Stage I, Stage II, Stage III (with the genotype-epoch sweep and its
selection), the comparisons and ``iac run``. Each takes the run's lock and executes its run plan
(:mod:`iac_tf.pipeline.plan`) with :func:`execute`: the checks before anything is written, the
records, then its steps (rows of :data:`STEPS`), which train their units
(:mod:`iac_tf.pipeline.units`)."""

from __future__ import annotations

import json
import logging

from iac_tf.evaluation.plots import plot_genotype_epochs
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.files import atomic_write_json
from iac_tf.losses import LOSS_NAMES
from iac_tf.pipeline.common import (checked_data, early_data_check, epoch_data,
                                    guarded, label_rule, prepare, trained_unet_path,
                                    unet_to_check, write_run_records)
from iac_tf.pipeline.evaluation import run_evaluation
from iac_tf.pipeline.given_unet import log_score, score_given_unet
from iac_tf.pipeline.plan import (RunPlan, build_plan, skipped_stages,  # noqa: F401 (API)
                                  stage3_units)
from iac_tf.pipeline.units import (comparison_unit, iac_unit, stage1_unit, strategy,
                                   train_unit, unet_continued_unit)
from iac_tf.preflight import checked_prepare
from iac_tf.run_layout import HISTORY, RunLayout, implant_model, sweep_epoch, sweep_model
from iac_tf.run_records import check_stages, record_machine, record_stage
from iac_tf.training.history import CsvHistory
from iac_tf.training.precision import precision_policy
from iac_tf.training.seeding import seed_everything
from iac_tf.training.fit import TrainResult, unconverged
from iac_tf.training.stage2 import SearchResult, search
from iac_tf.models import load_unet

log = logging.getLogger("iac_tf.pipeline")


# ---------------------------------------------------------------------------- Stage I
@guarded
def run_stage1(cfg: ExperimentConfig, restart: int | None = None) -> TrainResult:
    """Stage I: build the configured U-Net and train it on train_dt (best by val_dt soft Dice).
    ``restart``: clear that stage and all later ones first (``--restart stageN``)."""
    return execute(cfg, build_plan(cfg, "stage1", restart))["stage1"]


def _stage1(cfg: ExperimentConfig, prepared) -> TrainResult:
    def warn_unconverged(result: TrainResult) -> None:
        if not result.stopped_early and unconverged(result.best_epoch, cfg.stage1.epochs):
            log.warning("Stage I's best epoch (%d) is in the last 10%% of its %d epochs: the "
                        "U-Net has probably not converged, so a later gain of the IAC cannot be "
                        "told apart from more training. Train longer (stage1.epochs, "
                        "stage1.patience) before the search.", result.best_epoch,
                        cfg.stage1.epochs)

    return train_unit(cfg, prepared, stage1_unit(cfg, prepared), on_trained=warn_unconverged)


# ---------------------------------------------------------------------------- Stage II
@guarded
def run_stage2(cfg: ExperimentConfig, restart: int | None = None) -> SearchResult:
    """Stage II: search the IAC on the frozen trained U-Net (train_search_dt / val_search_dt).
    A given U-Net (``unet.pretrained``) is first scored on val_dt
    (:func:`~iac_tf.pipeline.given_unet.score_given_unet`)."""
    return execute(cfg, build_plan(cfg, "stage2", restart))["stage2"]


def _stage2(cfg: ExperimentConfig, prepared) -> SearchResult:
    layout = RunLayout.of(cfg)
    folder = layout.stage(2)
    if layout.search_done(cfg.stage2.epochs):
        paths = layout.genotype_files()
        log.info("Stage II: complete (%d search epochs, %d genotypes in %s), skipped",
                 cfg.stage2.epochs, len(paths), layout.genotypes)
        if cfg.unet.pretrained and layout.unet_score.is_file():
            log_score(json.loads(layout.unet_score.read_text()))
        return SearchResult(run_dir=folder, genotype_paths=paths,
                            history=CsvHistory(folder / HISTORY).rows(), seconds=0.0)
    if cfg.unet.pretrained:  # does it see what it was trained on? (before the search)
        score_given_unet(cfg, prepared)
    unet_path = trained_unet_path(cfg)
    bs = cfg.stage2.batch_size
    output = label_rule(cfg, prepared).output
    log.info("Stage II: searching on %s (%s output: %s loss) with %d / %d search slices -> %s",
             unet_path, output, LOSS_NAMES[output], prepared.num_slices("train_search_dt"),
             prepared.num_slices("val_search_dt"), folder)
    mirrored = strategy(cfg.stage2.distribute)
    with precision_policy(cfg.stage2.mixed_precision):
        with mirrored.scope():
            unet = load_unet(unet_path)
        result = search(unet, epoch_data(prepared, "train_search_dt", bs),
                        epoch_data(prepared, "val_search_dt", bs), cfg.stage2, folder,
                        seed=cfg.seed, strategy=mirrored, output=output)
    log.info("Stage II done: %d genotypes in %s", len(result.genotype_paths), layout.genotypes)
    return result


# ---------------------------------------------------------------------------- Stage III
def select_genotype(cfg: ExperimentConfig, best_val: dict[str, float]) -> int:
    """The sweep epoch whose Stage III is the run's final IAC U-Net (``stage3.select_genotype``):
    ``best_val`` the best val_dt score of the selection metric ``stage3.monitor`` (ties: the
    earlier epoch), ``last`` the last listed. ``best_val``: ``iac_epoch_XXX`` -> that score."""
    epochs = list(cfg.stage3.genotype_epochs)
    if cfg.stage3.select_genotype == "last":
        return epochs[-1]
    scores = [best_val[sweep_model(e)] for e in epochs]
    return epochs[max(range(len(epochs)), key=lambda i: (scores[i], -i))]


def _register_selected(cfg: ExperimentConfig, results: dict[str, TrainResult]) -> None:
    """With a sweep: register the selected epoch's IAC U-Net as ``iac``, record the choice and
    draw Fig. 6."""
    layout = RunLayout.of(cfg)
    sweep = {n: r for n, r in results.items() if sweep_epoch(n) is not None}
    final = select_genotype(cfg, {n: r.best_score for n, r in sweep.items()})
    layout.register_model("iac", layout.best_model(layout.sweep(final)))
    atomic_write_json(layout.selected_genotype, {
        "rule": cfg.stage3.select_genotype, "epoch": final, "metric": cfg.stage3.monitor,
        "best_val_score": {n: r.best_score for n, r in sweep.items()},
        "best_val_soft_dice": {n: r.best_val_soft_dice for n, r in sweep.items()}})
    figure = layout.genotype_epochs_plot
    plot_genotype_epochs({e: layout.sweep(e) / HISTORY for e in cfg.stage3.genotype_epochs}, figure)
    log.info("Stage III: the genotype of epoch %d is the run's IAC U-Net (select_genotype: %s); "
             "Fig. 6 curves in %s", final, cfg.stage3.select_genotype, figure)


@guarded
def run_stage3(cfg: ExperimentConfig, restart: int | None = None, evaluate_after: bool = True):
    """Stage III: train the discrete IAC of each genotype (one, or the genotype-epoch sweep
    ``stage3.genotype_epochs``) in the frozen U-Net, export it, register it in ``models.json``
    (``iac`` is the run's final IAC U-Net: with a sweep, the epoch chosen by
    ``stage3.select_genotype``; Fig. 6 in ``stage3/genotype_epochs.png``), then (unless
    ``evaluate_after`` is false) evaluate every registered model against the U-Net. Finished
    units are skipped, an interrupted one resumes. Returns ``{model name: TrainResult}``."""
    return execute(cfg, build_plan(cfg, "stage3", restart, evaluate=evaluate_after))["stage3"]


def _stage3(cfg: ExperimentConfig, prepared) -> dict[str, TrainResult]:
    RunLayout.of(cfg).register_model("unet", trained_unet_path(cfg))
    modes = {implant_model(m): m for m in cfg.stage3.extra_implant_modes}
    results = {name: train_unit(cfg, prepared,
                                iac_unit(cfg, name, geno, folder,
                                         modes.get(name, cfg.stage3.implant_mode)))
               for name, geno, folder in stage3_units(cfg)}
    if cfg.evaluation.unet_continued:
        results["unet_continued"] = train_unit(cfg, prepared, unet_continued_unit(cfg))
    if cfg.stage3.genotype_epochs:
        _register_selected(cfg, results)
    return results


def run_unet_continued(cfg: ExperimentConfig, prepared=None) -> TrainResult:
    """The budget-matched baseline ``unet_continued`` alone (see
    :func:`~iac_tf.pipeline.units.unet_continued_unit`)."""
    with RunLayout.of(cfg).lock():  # re-entrant: the commands already hold it
        return train_unit(cfg, prepared if prepared is not None else prepare(cfg),
                          unet_continued_unit(cfg))


# ---------------------------------------------------------------------------- comparisons
@guarded
def run_compare(cfg: ExperimentConfig, restart: int | None = None, evaluate_after: bool = True):
    """Train each comparison method of the run (``method`` if not ``iac``, then ``compare``) on
    the same frozen U-Net, splits and Stage III training settings, into ``compare/<method>/``
    (its resolved config in ``config.yaml``), register each in ``models.json``, then (unless
    ``evaluate_after`` is false) evaluate. Finished ones are skipped, an interrupted one resumes.
    Returns ``{method: TrainResult}``."""
    return execute(cfg, build_plan(cfg, "compare", restart, evaluate=evaluate_after)).get(
        "compare", {})


def _compare(cfg: ExperimentConfig, prepared) -> dict[str, TrainResult]:
    RunLayout.of(cfg).register_model("unet", trained_unet_path(cfg))
    record_machine(cfg, "compare")
    return {m: train_unit(cfg, prepared, comparison_unit(cfg, m)) for m in cfg.comparisons}


# ---------------------------------------------------------------------------- iac evaluate
@guarded
def evaluate(cfg: ExperimentConfig, prepared=None) -> dict:
    """Per-case Dice of the U-Net and of every model registered in ``models.json`` (the IAC
    U-Net, the sweep's epochs, the comparisons) on ``evaluation.split``, each compared with the
    U-Net (``prepared``: the already prepared data, if the caller has it). Stops with
    :class:`~iac_tf.run_records.RunConflict` if the stage folders hold another config's results,
    and with :class:`~iac_tf.run_layout.DatasetMismatch` if the data is not the run's."""
    return execute(cfg, build_plan(cfg, "evaluate"), prepared)["evaluate"]


# ---------------------------------------------------------------------------- iac run
@guarded
def run_all(cfg: ExperimentConfig, restart: int | None = None) -> None:
    """Stages I (unless ``unet.pretrained`` is set), II and III (if ``method`` is ``iac``), the
    comparison methods, then the evaluation. Everything is checked once before anything is
    written or deleted (stage records, the pre-flight of the first stage to run, the dataset),
    the data is prepared once and every stage uses it; finished parts are skipped."""
    execute(cfg, build_plan(cfg, "run", restart))


# ---------------------------------------------------------------------------- the executor
#: what each kind of step of a run plan does: ``(cfg, prepared) -> its result`` (each looks its
#: function up when it runs, so a replaced module attribute is the one called)
STEPS = {
    "stage1": lambda cfg, prepared: _stage1(cfg, prepared),
    "stage2": lambda cfg, prepared: _stage2(cfg, prepared),
    "score_unet": lambda cfg, prepared: score_given_unet(cfg, prepared),
    "stage3": lambda cfg, prepared: _stage3(cfg, prepared),
    "compare": lambda cfg, prepared: _compare(cfg, prepared),
    "evaluate": lambda cfg, prepared: run_evaluation(cfg, prepared),
}


def execute(cfg: ExperimentConfig, plan: RunPlan, prepared=None) -> dict:
    """Run ``plan`` (the caller holds the run's lock): the config against the stage records,
    the dataset against the run's record, the pre-flight checks and the data preparation --
    all before anything is written or deleted; then ``--restart`` deletes and the run records
    are written, the run's decision rule is found (a given U-Net's output: loading it draws
    from Keras' seed generator, so before any unit seeds), and the steps run in order, each
    stage's record written before it and each unit seeded once at its start. Returns
    ``{step kind: result}`` of the steps that ran (``prepared``: data already prepared)."""
    check_stages(cfg, plan.checked_stages)  # the stage records the command reads and keeps
    data = early_data_check(cfg) if plan.checks_data else None
    if plan.preflight is not None:
        prepared = _preflight(cfg, plan)
    if plan.checks_data and data is None:
        data = checked_data(cfg)
    if plan.writes_records:
        write_run_records(cfg, plan.restart, data, (list(plan.removes), list(plan.keeps)))
        label_rule(cfg, prepared)
    results = {}
    for step in plan.steps:
        if step.skipped is not None:
            log.info("%s: skipped: %s", step.title, step.skipped)
            continue
        if step.record is not None:
            record_stage(cfg, step.record)
        if step.seeds:
            seed_everything(cfg.seed, cfg.deterministic)
        results[step.kind] = STEPS[step.kind](cfg, prepared)
    return results


def _preflight(cfg: ExperimentConfig, plan: RunPlan):
    """The plan's pre-flight checks (:class:`~iac_tf.pipeline.plan.Preflight`), then the
    prepared data every step uses."""
    check = plan.preflight
    if check.missing:
        raise FileNotFoundError(check.missing)
    return checked_prepare(
        cfg, check.stage, prepare,
        unet_path=unet_to_check(cfg, plan.restart) if check.unet else None,
        genotype_path=list(check.genotypes) or None)
