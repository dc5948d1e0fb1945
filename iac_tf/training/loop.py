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
"""

from __future__ import annotations

import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping

from iac_tf._keras import keras, tf
from iac_tf.diskspace import disk_full_guard
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
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        trackables: Mapping[str, Any],
        monitor: str | None = "val_dice",
        mode: str = "max",
        max_to_keep: int = 2,
        tensorboard: bool = True,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = pathlib.Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.monitor = monitor
        self.mode = mode
        self.tensorboard = tensorboard
        self.completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        worst = -math.inf if mode == "max" else math.inf
        self.best = tf.Variable(worst, dtype=tf.float64, trainable=False, name="best_score")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.checkpoint = tf.train.Checkpoint(
            completed_epochs=self.completed, best=self.best, best_epoch=self.best_epoch, **trackables
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
        self.history.truncate(done)
        return done

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
    ) -> list[dict]:
        """Train from the first unfinished epoch to ``epochs``; return the history rows.

        ``train_data(e)`` / ``val_data(e)`` build epoch ``e``'s datasets (0-based).
        ``on_epoch_end(epoch, logs)`` (1-based epoch) may return extra values to log.
        ``save_best(epoch)`` is called when ``monitor`` improves.
        """
        start = self.restore()
        callbacks = []
        if self.tensorboard:
            callbacks.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(self.run_dir / "tensorboard"), write_graph=False, profile_batch=0
                )
            )
        if start >= epochs:
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
            if on_epoch_end is not None:
                logs.update(on_epoch_end(epoch + 1, logs) or {})
            if self.monitor is not None:
                if self.monitor not in logs:
                    raise KeyError(
                        f"monitored value {self.monitor!r} not in the epoch logs {sorted(logs)}"
                    )
                value = float(logs[self.monitor])
                if self._improved(value):
                    self.best.assign(value)
                    self.best_epoch.assign(epoch + 1)
                    if save_best is not None:
                        with self._disk_guard(model, f"the best model of epoch {epoch + 1}"):
                            save_best(epoch + 1)
                logs[f"best_{self.monitor}"] = float(self.best.numpy())
            self.history.append(logs)
            self.completed.assign(epoch + 1)
            with self._disk_guard(model, f"the checkpoint of epoch {epoch + 1}"):
                self.manager.save(checkpoint_number=epoch + 1)
        return self.history.rows()

    def _disk_guard(self, model: keras.Model, what: str):
        """A full disk while saving -> :class:`~iac_tf.diskspace.DiskFullError` naming the
        folder and the size of the last checkpoint + best model, partial files removed."""
        ckpt = self.run_dir / "checkpoints"
        sizes = [p.stat().st_size for p in ckpt.glob("ckpt-*.*") if p.is_file()]
        latest = self.manager.latest_checkpoint
        if latest:
            sizes = [p.stat().st_size for p in ckpt.glob(pathlib.Path(latest).name + ".*")]
        best = [p.stat().st_size for p in self.run_dir.glob("*.keras")]
        needed = sum(sizes) + sum(best) or 4 * 4 * model.count_params()
        return disk_full_guard(
            self.run_dir, what, "output_dir", needed=needed,
            cleanup=lambda: [*ckpt.glob("*_temp*"), *self.run_dir.glob(".*.tmp.*")])


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Save ``model`` (``.keras`` or ``.h5``) through a temp file and ``os.replace``."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        model.save(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
