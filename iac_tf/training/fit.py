"""Fit a Keras model the project's way: every trained model of a run (Stage I's U-Net
(paper Section IV-B.1), Stage III's IAC U-Net, ``unet_continued``, each comparison method) is
trained by :func:`train_model` on ``train_dt`` with the checkpointed epoch loop
(:mod:`iac_tf.training.loop`: history, checkpoints, resume), its best epoch selected on
``val_dt`` and saved as ``best_model.keras``, with its :class:`TrainResult` in ``summary.json``.

Two Dice numbers appear in a run and they are different quantities: the *soft Dice* here
(``soft_dice`` / ``val_soft_dice`` in ``history.csv``, ``best_val_soft_dice`` in
``summary.json``) is the slice-level soft Dice of the sigmoid outputs (of a softmax's class
channels) averaged over batches, used
only to select the best epoch; the evaluation's *per-case Dice*
(:mod:`iac_tf.evaluation.metrics`) binarises the predictions and scores each case's volume.
Both follow the dataset's decision rule when one is given (``rule``, a
:class:`~iac_tf.labels.LabelRule`; the pipeline always gives it): the soft Dice of the
rule's soft channels (:func:`iac_tf.losses.selection_metric`) and the hard Dice of its labels.

Paper defaults (:class:`~iac_tf.config.stages.TrainingSettings`): Adam, constant learning rate
1e-3, batch size 128, 200 epochs, Dice loss. Our additions: the selection metric (``monitor``),
an epoch 0 that scores the model before its first update (``evaluate_initial``), early stopping
(``patience``) and a flag in ``summary.json`` when the best epoch falls in the last 10 % of the
epochs (the model had not converged).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time

from iac_tf._keras import keras
from iac_tf.losses import selection_metric, training_loss
from iac_tf.files import atomic_write_json, save_model
from iac_tf.training.loop import EpochLoop
from iac_tf.training.optimizers import make_optimizer
from iac_tf.config.stages import MONITOR, TrainingSettings
from iac_tf.run_layout import BEST_MODEL, SUMMARY
from iac_tf.training.seeding import DataSource, as_epoch_fn

@dataclasses.dataclass
class TrainResult:
    """What a training stage leaves behind."""

    run_dir: pathlib.Path
    best_model_path: pathlib.Path
    best_epoch: int
    best_val_soft_dice: float
    history: list[dict]
    seconds: float
    monitor: str = MONITOR
    stopped_early: bool = False
    best_score: float = float("nan")  # the best value of ``monitor``


def unconverged(best_epoch: int, epochs: int) -> bool:
    """True when ``best_epoch`` lies in the last 10 % (at least the last one) of ``epochs``."""
    return best_epoch > epochs - max(1, epochs // 10)


def _at_best(history: list[dict], best_epoch: int, key: str) -> float:
    """``key`` of the history row of ``best_epoch`` (NaN if absent)."""
    for row in history:
        if int(row["epoch"]) == best_epoch and row.get(key) not in (None, ""):
            return float(row[key])
    return float("nan")


def compile_for_training(model: keras.Model, cfg: TrainingSettings, rule=None) -> None:
    """Compile with the paper's optimiser and the loss the output calls for (the Dice loss of
    eq. (5) for sigmoids, Dice + cross-entropy for a softmax of ``rule``:
    :func:`iac_tf.losses.training_loss`), and the soft Dice metric of ``rule``
    (:func:`iac_tf.losses.selection_metric`; ``None``: every channel on its own). Loss scaling
    is added by Keras under a ``mixed_float16`` policy."""
    model.compile(
        optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate),
        loss=training_loss(rule, eps=cfg.dice_eps),
        metrics=[selection_metric(rule, eps=cfg.dice_eps, name="soft_dice")],
    )


def train_model(
    model: keras.Model,
    train_data: DataSource,
    val_data: DataSource,
    cfg: TrainingSettings,
    run_dir: str | os.PathLike,
    extra_trackables: dict | None = None,
    case_scorer=None,
    seed: int = 0,
    rule=None,
) -> TrainResult:
    """Train ``model`` with the loss of its output (:func:`compile_for_training`), keeping the
    best checkpoint by ``cfg.monitor``.

    Args:
        model: a functional Keras model with sigmoid outputs, or a softmax over background +
            classes when ``rule`` is a ``softmax`` rule (uncompiled or compiled).
        train_data: a batched ``tf.data.Dataset`` or a callable ``(epoch, seed) -> dataset``
            (``seed``: the epoch's shuffle seed, ``None`` when ``cfg.shuffle`` is off).
        val_data: the same for validation (``val_dt``).
        cfg: training hyper-parameters.
        run_dir: the stage folder (``history.csv``, ``checkpoints/``, ``tensorboard/``,
            ``best_model.keras``, ``summary.json``). A run there is resumed.
        extra_trackables: more objects to checkpoint with the model.
        case_scorer: ``model -> float``, the per-case hard Dice on ``val_dt`` (see
            ``iac_tf.evaluation.metrics.mean_case_dice``); logged as ``val_case_dice`` after
            every epoch when given. Required when ``cfg.monitor`` is ``val_case_dice``.
        seed: the run seed (data order).
        rule: the dataset's :class:`~iac_tf.labels.LabelRule`: the soft Dice
            (``soft_dice``, ``val_soft_dice``) scores its soft channels, and its output
            (``sigmoid`` or ``softmax``) picks the loss; ``None``: every channel on its own
            (the paper's protocol), Dice loss. Recorded in ``summary.json``
            (``selection_rule``). ``case_scorer`` should use the same rule.
    """
    run_dir = pathlib.Path(run_dir)
    if model.optimizer is None:
        compile_for_training(model, cfg, rule)
    t0 = time.perf_counter()
    monitor = cfg.monitor
    if monitor == "val_case_dice" and case_scorer is None:
        raise ValueError("monitor 'val_case_dice' needs a case_scorer (the val_dt arrays with case ids)")
    loop = EpochLoop(
        run_dir,
        {"model": model, "optimizer": model.optimizer, **(extra_trackables or {})},
        monitor=monitor,
        mode="max",
        max_to_keep=cfg.checkpoints_to_keep,
        seed=seed,
        shuffle=cfg.shuffle,
        patience=cfg.patience,
    )
    best_path = run_dir / BEST_MODEL

    def case_metrics(epoch: int, logs: dict) -> dict:
        return {"val_case_dice": float(case_scorer(model))} if case_scorer is not None else {}

    history = loop.run(
        model,
        cfg.epochs,
        train_data=as_epoch_fn(train_data),
        val_data=as_epoch_fn(val_data),
        on_epoch_end=case_metrics,
        save_best=lambda epoch: save_model(model, best_path),
        verbose=cfg.verbose,
        evaluate_initial=cfg.evaluate_initial,
    )
    result = TrainResult(
        run_dir=run_dir,
        best_model_path=best_path,
        best_epoch=int(loop.best_epoch.numpy()),
        best_val_soft_dice=_at_best(history, int(loop.best_epoch.numpy()), "val_soft_dice"),
        history=history,
        seconds=time.perf_counter() - t0,
        monitor=monitor,
        stopped_early=loop.stopped_early,
        best_score=float(loop.best.numpy()),
    )
    atomic_write_json(
        run_dir / SUMMARY,
        {
            "best_epoch": result.best_epoch,
            "best_val_soft_dice": result.best_val_soft_dice,
            "selection_metric": monitor,
            "selection_rule": (rule.record() if rule is not None else
                               {"metric": "paper_channels", "label_mode": None,
                                "description": "each output channel scored on its own"}),
            "best_score": result.best_score,
            "epoch0_evaluated": bool(cfg.evaluate_initial),
            "stopped_early": result.stopped_early,
            "epochs_run": sum(1 for r in history if int(r["epoch"]) > 0),
            "best_epoch_in_last_10_percent": (not result.stopped_early
                                              and unconverged(result.best_epoch, cfg.epochs)),
            "epochs": cfg.epochs,
            "completed_epochs": len(history),
            "params": int(model.count_params()),
            "trainable_params": int(sum(int(w.shape.num_elements()) for w in model.trainable_weights)),
            "seconds_this_session": result.seconds,
            "best_model": str(best_path),
        },
    )
    return result
