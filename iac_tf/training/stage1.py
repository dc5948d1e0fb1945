"""Stage I (paper Section IV-B.1): train a reference U-Net on ``train_dt``, select the best
checkpoint by Dice on ``val_dt``.

Two Dice numbers appear in a run and they are different quantities: the *soft Dice* here
(``soft_dice`` / ``val_soft_dice`` in ``history.csv``, ``best_val_soft_dice`` in
``summary.json``) is the slice-level soft Dice of the sigmoid outputs averaged over batches, used
only to select the best epoch; the evaluation's *per-case Dice*
(:mod:`iac_tf.evaluation.metrics`) thresholds the predictions and scores each case's volume.

Paper defaults: Adam, constant learning rate 1e-3, batch size 128, 200 epochs, Dice loss.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from typing import Literal

from iac_tf._keras import keras
from iac_tf.losses import DiceCoefficient, DiceLoss
from iac_tf.files import atomic_write_json, save_model
from iac_tf.training.loop import EpochLoop
from iac_tf.training.optimizers import make_optimizer
from iac_tf.training.seeding import DataSource, as_epoch_fn

BEST_MODEL = "best_model.keras"
SUMMARY = "summary.json"
MONITOR = "val_soft_dice"  # slice-level soft Dice on val_dt: selects the best epoch


@dataclasses.dataclass(frozen=True)
class Stage1Config:
    """The ``stage1:`` section of an experiment YAML (also used by Stage III for its training).

    Args:
        epochs: training epochs (paper: 200).
        batch_size: batch size (paper: 128).
        learning_rate: constant learning rate (paper: 1e-3).
        optimizer: ``adam`` (paper) or ``sgd``.
        mixed_precision: build and train under ``mixed_float16`` (GPU).
        dice_eps: smoothing of the Dice loss/metric.
        shuffle: reshuffle ``train_dt`` every epoch (deterministically from the seed).
        checkpoints_to_keep: epoch checkpoints kept for resuming.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
    """

    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    mixed_precision: bool = False
    dice_eps: float = 1.0
    shuffle: bool = True
    checkpoints_to_keep: int = 2
    verbose: int = 2

    def __post_init__(self):
        for key in ("epochs", "batch_size", "checkpoints_to_keep"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose}")


@dataclasses.dataclass
class TrainResult:
    """What a training stage leaves behind."""

    run_dir: pathlib.Path
    best_model_path: pathlib.Path
    best_epoch: int
    best_val_soft_dice: float
    history: list[dict]
    seconds: float


def compile_for_training(model: keras.Model, cfg: Stage1Config) -> None:
    """Compile with the paper's optimiser and Dice loss/metric (loss scaling is added by Keras
    under a ``mixed_float16`` policy)."""
    model.compile(
        optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate),
        loss=DiceLoss(eps=cfg.dice_eps),
        metrics=[DiceCoefficient(eps=cfg.dice_eps, name="soft_dice")],
    )


def train_model(
    model: keras.Model,
    train_data: DataSource,
    val_data: DataSource,
    cfg: Stage1Config,
    run_dir: str | os.PathLike,
    extra_trackables: dict | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` with Dice loss, keeping the best checkpoint by ``val_soft_dice``.

    Args:
        model: a functional Keras model with sigmoid outputs (uncompiled or compiled).
        train_data: a batched ``tf.data.Dataset`` or a callable ``(epoch, seed) -> dataset``
            (``seed``: the epoch's shuffle seed, ``None`` when ``cfg.shuffle`` is off).
        val_data: the same for validation (``val_dt``).
        cfg: training hyper-parameters.
        run_dir: the stage folder (``history.csv``, ``checkpoints/``, ``tensorboard/``,
            ``best_model.keras``, ``summary.json``). A run there is resumed.
        extra_trackables: more objects to checkpoint with the model.
        seed: the run seed (data order).
    """
    run_dir = pathlib.Path(run_dir)
    if model.optimizer is None:
        compile_for_training(model, cfg)
    t0 = time.perf_counter()
    loop = EpochLoop(
        run_dir,
        {"model": model, "optimizer": model.optimizer, **(extra_trackables or {})},
        monitor=MONITOR,
        mode="max",
        max_to_keep=cfg.checkpoints_to_keep,
        seed=seed,
        shuffle=cfg.shuffle,
    )
    best_path = run_dir / BEST_MODEL
    history = loop.run(
        model,
        cfg.epochs,
        train_data=as_epoch_fn(train_data),
        val_data=as_epoch_fn(val_data),
        save_best=lambda epoch: save_model(model, best_path),
        verbose=cfg.verbose,
    )
    result = TrainResult(
        run_dir=run_dir,
        best_model_path=best_path,
        best_epoch=int(loop.best_epoch.numpy()),
        best_val_soft_dice=float(loop.best.numpy()),
        history=history,
        seconds=time.perf_counter() - t0,
    )
    atomic_write_json(
        run_dir / SUMMARY,
        {
            "best_epoch": result.best_epoch,
            "best_val_soft_dice": result.best_val_soft_dice,
            "epochs": cfg.epochs,
            "completed_epochs": len(history),
            "params": int(model.count_params()),
            "trainable_params": int(sum(int(w.shape.num_elements()) for w in model.trainable_weights)),
            "seconds_this_session": result.seconds,
            "best_model": str(best_path),
        },
    )
    return result
