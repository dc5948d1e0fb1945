"""The epoch loop shared by Stages I, II and III: one ``model.fit`` call per epoch, with
checkpoint/resume, an epoch CSV, TensorBoard logs, best-model tracking and per-epoch hooks.

Why one ``fit`` per epoch: the data of epoch ``e`` is built by ``train_data(e)`` (its order a pure
function of the seed and ``e``), so a run resumed after a kill replays exactly the batches an
uninterrupted run would have seen. ``model.train_function`` is cached by Keras across calls, so
nothing is retraced.

Crash safety: after each finished epoch the loop (1) writes the best model if it improved,
(2) appends the epoch's row to ``history.csv`` (atomic rewrite), (3) saves a TF checkpoint of
every trackable (weights, optimiser states, epoch counter, best score). TF writes checkpoint data
under temporary names and updates its ``checkpoint`` index atomically, so a kill at any moment
leaves the previous checkpoint loadable. On resume, CSV rows of epochs not covered by the
checkpoint are dropped and training continues at the first unfinished epoch.

Epoch 0 (``evaluate_initial``, issue 11): before the first update the model is scored on the
validation data (and by ``on_epoch_end``) like a finished epoch; it takes part in the best-epoch
choice (``save_best(0)``), appears as row ``epoch 0`` of the history and is checkpointed, so a
resumed run does not score it again. Early stopping (``patience``) is a pure function of the
checkpointed best epoch, so a resumed run stops where an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping

from iac_tf._keras import keras, tf
from iac_tf.training.runs import CsvHistory


class EpochLoop:
    """Checkpointed epoch loop.

    Args:
        run_dir: the stage's folder; ``checkpoints/``, ``history.csv`` and ``tensorboard/`` go here.
        trackables: objects to checkpoint by name (the model, optimisers, extra variables).
        monitor: log key that selects the best epoch (e.g. ``"val_dice"``); ``None`` disables it.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        max_to_keep: how many epoch checkpoints to keep.
        tensorboard: write TensorBoard logs.
        patience: stop when ``monitor`` has not improved for this many epochs (``None``: never).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        trackables: Mapping[str, Any],
        monitor: str | None = "val_dice",
        mode: str = "max",
        max_to_keep: int = 2,
        tensorboard: bool = True,
        patience: int | None = None,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = pathlib.Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.monitor = monitor
        self.mode = mode
        self.tensorboard = tensorboard
        self.patience = patience
        self.stopped_early = False
        self.completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        worst = -math.inf if mode == "max" else math.inf
        self.best = tf.Variable(worst, dtype=tf.float64, trainable=False, name="best_score")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.initial_done = tf.Variable(False, trainable=False, name="initial_evaluated")
        self.checkpoint = tf.train.Checkpoint(
            completed_epochs=self.completed, best=self.best, best_epoch=self.best_epoch,
            initial_evaluated=self.initial_done, **trackables
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.run_dir / "checkpoints"), max_to_keep=max_to_keep
        )
        self.history = CsvHistory(self.run_dir / "history.csv")

    # ------------------------------------------------------------------ resume
    def restore(self) -> int:
        """Restore the latest checkpoint if there is one; return the number of finished epochs."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).expect_partial()
        done = int(self.completed.numpy())
        # no checkpoint at all: drop every row, an epoch-0 row included
        self.history.truncate(done if latest else -1)
        return done

    def _patience_exhausted(self, done: int) -> bool:
        return (self.monitor is not None and self.patience is not None
                and done - int(self.best_epoch.numpy()) >= self.patience)

    def _improved(self, value: float) -> bool:
        best = float(self.best.numpy())
        return value > best if self.mode == "max" else value < best

    # ------------------------------------------------------------------ run
    def run(
        self,
        model: keras.Model,
        epochs: int,
        train_data: Callable[[int], tf.data.Dataset],
        val_data: Callable[[int], tf.data.Dataset] | None = None,
        on_epoch_end: Callable[[int, dict], Mapping[str, Any] | None] | None = None,
        save_best: Callable[[int], None] | None = None,
        verbose: int = 1,
        steps_per_epoch: int | None = None,
        evaluate_initial: bool = False,
    ) -> list[dict]:
        """Train from the first unfinished epoch to ``epochs``; return the history rows.

        ``train_data(e)`` / ``val_data(e)`` build epoch ``e``'s datasets (0-based).
        ``on_epoch_end(epoch, logs)`` (1-based epoch) may return extra values to log.
        ``save_best(epoch)`` is called when ``monitor`` improves.
        ``evaluate_initial``: score the untrained model as epoch 0 first (needs ``val_data``).
        """
        start = self.restore()
        if evaluate_initial and not bool(self.initial_done.numpy()):
            if start:
                raise ValueError(f"{self.run_dir}: this run was started without evaluate_initial; "
                                 "epoch 0 cannot be scored after training began")
            self._initial_epoch(model, val_data, on_epoch_end, save_best, verbose)
        callbacks = []
        if self.tensorboard:
            callbacks.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(self.run_dir / "tensorboard"), write_graph=False, profile_batch=0
                )
            )
        if start >= epochs:
            return self.history.rows()
        if self._patience_exhausted(start):
            self.stopped_early = True
            return self.history.rows()
        if start and verbose:
            print(f"[iac] resuming {self.run_dir} at epoch {start + 1}/{epochs}", flush=True)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            fit = model.fit(
                train_data(epoch),
                validation_data=val_data(epoch) if val_data is not None else None,
                epochs=epoch + 1,
                initial_epoch=epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=verbose,
            )
            logs: dict[str, Any] = {"epoch": epoch + 1}
            logs.update({k: float(v[-1]) for k, v in fit.history.items()})
            logs["epoch_time_s"] = time.perf_counter() - t0
            self._finish_epoch(epoch + 1, logs, on_epoch_end, save_best)
            if self._patience_exhausted(epoch + 1):
                self.stopped_early = True
                if verbose:
                    print(f"[iac] early stop: no better {self.monitor} for {self.patience} epochs "
                          f"(best epoch {int(self.best_epoch.numpy())})", flush=True)
                break
        return self.history.rows()

    def _finish_epoch(self, epoch: int, logs: dict, on_epoch_end, save_best) -> None:
        """Extra logs, best-model tracking, history row and checkpoint of a finished epoch."""
        if on_epoch_end is not None:
            logs.update(on_epoch_end(epoch, logs) or {})
        if self.monitor is not None:
            if self.monitor not in logs:
                raise KeyError(
                    f"monitored value {self.monitor!r} not in the epoch logs {sorted(logs)}"
                )
            value = float(logs[self.monitor])
            if self._improved(value):
                self.best.assign(value)
                self.best_epoch.assign(epoch)
                if save_best is not None:
                    save_best(epoch)
            logs[f"best_{self.monitor}"] = float(self.best.numpy())
        self.history.append(logs)
        self.completed.assign(epoch)
        if epoch == 0:
            self.initial_done.assign(True)
        self.manager.save(checkpoint_number=epoch)

    def _initial_epoch(self, model, val_data, on_epoch_end, save_best, verbose) -> None:
        """Epoch 0: the model before its first update, scored on the validation data."""
        if val_data is None:
            raise ValueError("evaluate_initial needs val_data")
        t0 = time.perf_counter()
        scores = model.evaluate(val_data(0), verbose=0, return_dict=True)
        logs: dict[str, Any] = {"epoch": 0}
        # no training happened: the training columns are empty, validation ones are measured
        logs.update({k: float("nan") for k in scores})
        logs.update({f"val_{k}": float(v) for k, v in scores.items()})
        logs["epoch_time_s"] = time.perf_counter() - t0
        self._finish_epoch(0, logs, on_epoch_end, save_best)
        if verbose:
            shown = {k: round(v, 4) for k, v in logs.items() if k.startswith("val_")}
            print(f"[iac] epoch 0 (before training): {shown}", flush=True)


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Save ``model`` (``.keras`` or ``.h5``) through a temp file and ``os.replace``."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(str(tmp))
    os.replace(tmp, path)
