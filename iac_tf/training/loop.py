"""The epoch loop shared by Stages I, II and III: one ``model.fit`` call per epoch, with
checkpoint/resume, an epoch CSV, TensorBoard logs, best-model tracking and per-epoch hooks.

Why one ``fit`` per epoch: the data of epoch ``e`` is built by ``train_data(e, seed)`` where the
seed is read here, in one place, from the run seed and the stage's ``shuffle`` switch
(:func:`iac_tf.training.seeding.data_seed`), so a run resumed after a kill replays exactly the
batches an uninterrupted run would have seen. ``model.train_function`` is cached by Keras across
calls, so nothing is retraced.

Per-epoch state (Stage II's search switch, learning rate and lambda_e) is set by the
``on_epoch_begin`` hook before the epoch's ``fit``; the hook may name log values that the epoch
does not measure (Stage II's val_search values during the warm-up): they are logged as NaN and
shown as ``n/a`` on the console, never as 0.

Crash safety: after each finished epoch the loop (1) writes the best model if it improved,
(2) appends the epoch's row to ``history.csv`` (atomic rewrite), (3) saves a TF checkpoint of
every trackable (weights, optimiser states, epoch counter, best score). TF writes checkpoint data
under temporary names and updates its ``checkpoint`` index atomically, so a kill at any moment
leaves the previous checkpoint loadable. On resume, CSV rows of epochs not covered by the
checkpoint are dropped and training continues at the first unfinished epoch.

Epoch 0 (``evaluate_initial``): before the first update the model is scored on the
validation data (and by ``on_epoch_end``) like a finished epoch; it takes part in the best-epoch
choice (``save_best(0)``), appears as row ``epoch 0`` of the history (training columns NaN) and is
checkpointed, so a resumed run does not score it again. Early stopping (``patience``) is a pure
function of the checkpointed best epoch, so a resumed run stops where an uninterrupted one would.

Console: ``Epoch e/E`` counts from 1 to the stage's total ``E`` (Keras alone would print
``Epoch e/e`` for a one-epoch ``fit``). TensorBoard: one event file per phase (``train``,
``validation``) and process, written by the loop from the epoch logs (Keras' callback would open
a new file at every ``fit`` call).
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import time
from typing import Any, Callable, Iterable, Mapping

import logging

from iac_tf.errors import UserError
from iac_tf._keras import keras, tf
from iac_tf.diskspace import disk_full_guard
from iac_tf.files import make_dirs, record_written
from iac_tf.run_layout import CHECKPOINTS, HISTORY, TENSORBOARD
from iac_tf.training.history import CsvHistory
from iac_tf.training.seeding import EpochDataFn, data_seed

log = logging.getLogger(__name__)

#: ``on_epoch_begin(epoch)`` (1-based) -> log keys this epoch does not measure (or None)
EpochBeginHook = Callable[[int], "Iterable[str] | None"]
#: ``on_epoch_end(epoch, logs)`` (1-based) -> extra values to log (or None)
EpochEndHook = Callable[[int, dict], "Mapping[str, Any] | None"]


class EpochLoop:
    """Checkpointed epoch loop.

    Args:
        run_dir: the stage's folder; ``checkpoints/``, ``history.csv`` and ``tensorboard/`` go here.
        trackables: objects to checkpoint by name (the model, optimisers, extra variables).
        monitor: log key that selects the best epoch (e.g. ``"val_soft_dice"``); ``None``
            disables it.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        max_to_keep: how many epoch checkpoints to keep.
        tensorboard: write TensorBoard logs.
        seed: the run seed; each epoch's shuffle seed is derived from it.
        shuffle: reshuffle the data every epoch (else the data factories get ``seed=None``).
        patience: stop when ``monitor`` has not improved for this many epochs (``None``: never).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        trackables: Mapping[str, Any],
        monitor: str | None = "val_soft_dice",
        mode: str = "max",
        max_to_keep: int = 2,
        tensorboard: bool = True,
        seed: int = 0,
        shuffle: bool = True,
        patience: int | None = None,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = make_dirs(run_dir)
        self.monitor = monitor
        self.mode = mode
        self.tensorboard = tensorboard
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
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
            self.checkpoint, str(self.run_dir / CHECKPOINTS), max_to_keep=max_to_keep
        )
        self.history = CsvHistory(self.run_dir / HISTORY)

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
        train_data: EpochDataFn,
        val_data: EpochDataFn | None = None,
        on_epoch_begin: EpochBeginHook | None = None,
        on_epoch_end: EpochEndHook | None = None,
        save_best: Callable[[int], None] | None = None,
        verbose: int = 1,
        steps_per_epoch: int | None = None,
        evaluate_initial: bool = False,
        stop: Callable[[int], bool] | None = None,
    ) -> list[dict]:
        """Train from the first unfinished epoch to ``epochs``; return the history rows.

        ``train_data(e, seed)`` / ``val_data(e, seed)`` build epoch ``e``'s datasets (0-based
        ``e``; ``seed`` is the epoch's shuffle seed, ``None`` without shuffling).
        ``on_epoch_begin(epoch)`` (1-based) sets per-epoch state and may return the log keys the
        epoch does not measure. ``on_epoch_end(epoch, logs)`` (1-based) may return extra values
        to log. ``save_best(epoch)`` is called when ``monitor`` improves.
        ``evaluate_initial``: score the untrained model as epoch 0 first (needs ``val_data``).
        ``stop(done)``: after ``done`` finished epochs, stop here (also checked on resume, so a
        resumed run stops where an uninterrupted one would); it must be a pure function of
        what the finished epochs wrote.
        """
        start = self.restore()
        self._weights = model.weights  # for the full-disk estimate before any file exists
        if evaluate_initial and not bool(self.initial_done.numpy()):
            if start:
                raise UserError(f"{self.run_dir}: this run was started without evaluate_initial; "
                                 "epoch 0 cannot be scored after training began")
            self._initial_epoch(model, val_data, on_epoch_end, save_best, verbose)
        if start >= epochs:
            return self.history.rows()
        if self._patience_exhausted(start) or (start and stop is not None and stop(start)):
            self.stopped_early = True
            return self.history.rows()
        if start and verbose:
            log.info("resuming %s at epoch %d/%d", self.run_dir, start + 1, epochs)
        self._epoch_seconds: list[float] = []
        progbar = _EpochProgbar(epochs)
        board = _Board(self.run_dir / TENSORBOARD) if self.tensorboard else None
        try:
            for epoch in range(start, epochs):
                self._run_epoch(model, epoch, epochs, train_data, val_data, on_epoch_begin,
                                on_epoch_end, save_best, verbose, steps_per_epoch, progbar, board)
                if self._patience_exhausted(epoch + 1):
                    self.stopped_early = True
                    if verbose:
                        log.info("early stop: no better %s for %d epochs (best epoch %d)",
                                 self.monitor, self.patience, int(self.best_epoch.numpy()))
                    break
                if stop is not None and epoch + 1 < epochs and stop(epoch + 1):
                    self.stopped_early = True
                    break
        finally:
            if board is not None:
                board.close()
        return self.history.rows()

    def _run_epoch(self, model, epoch, epochs, train_data, val_data, on_epoch_begin, on_epoch_end,
                   save_best, verbose, steps_per_epoch, progbar, board) -> None:
        e = epoch + 1
        unmeasured = tuple(on_epoch_begin(e) or ()) if on_epoch_begin is not None else ()
        progbar.hidden = unmeasured
        seed = data_seed(self.seed, epoch, self.shuffle)
        val_seed = None if seed is None else seed + 1
        t0 = time.perf_counter()
        fit = model.fit(
            train_data(epoch, seed),
            validation_data=val_data(epoch, val_seed) if val_data is not None else None,
            epochs=e,
            initial_epoch=epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=[progbar],
            verbose=verbose,
        )
        logs: dict[str, Any] = {"epoch": e}
        logs.update({k: float(v[-1]) for k, v in fit.history.items()})
        logs.update({k: math.nan for k in unmeasured})
        logs["epoch_time_s"] = time.perf_counter() - t0
        self._finish_epoch(e, logs, on_epoch_end, save_best, board)
        self._epoch_seconds.append(logs["epoch_time_s"])
        log.info("%s", epoch_line(self.run_dir.name, e, epochs, self._epoch_seconds,
                                  self.monitor, logs.get(self.monitor) if self.monitor else None))

    def _finish_epoch(self, e: int, logs: dict, on_epoch_end, save_best, board=None) -> None:
        """Extra logs, best-model tracking, history row and checkpoint of a finished epoch."""
        if on_epoch_end is not None:
            logs.update(on_epoch_end(e, logs) or {})
        if self.monitor is not None:
            if self.monitor not in logs:
                raise KeyError(f"monitored value {self.monitor!r} not in the epoch logs {sorted(logs)}")
            value = float(logs[self.monitor])
            if self._improved(value):
                self.best.assign(value)
                self.best_epoch.assign(e)
                if save_best is not None:
                    with self._disk_guard(f"the best model of epoch {e}"):
                        save_best(e)
            logs[f"best_{self.monitor}"] = float(self.best.numpy())
        self.history.append(logs)
        if board is not None:
            board.write(e, logs)
        self.completed.assign(e)
        if e == 0:
            self.initial_done.assign(True)
        with self._disk_guard(f"the checkpoint of epoch {e}"):
            # TensorFlow writes and rotates the checkpoint files itself: the folder is the tool's
            record_written([self.run_dir / CHECKPOINTS], tree=True)
            self.manager.save(checkpoint_number=e)

    def _disk_guard(self, what: str):
        """A full disk while saving -> :class:`~iac_tf.diskspace.DiskFullError` naming the
        folder and the size of the last checkpoint + best model, partial files removed."""
        ckpt = self.run_dir / CHECKPOINTS
        sizes = [p.stat().st_size for p in ckpt.glob("ckpt-*.*") if p.is_file()]
        latest = self.manager.latest_checkpoint
        if latest:
            sizes = [p.stat().st_size for p in ckpt.glob(pathlib.Path(latest).name + ".*")]
        best = [p.stat().st_size for p in self.run_dir.glob("*.keras")]
        # no file yet: float32 weights + 2 Adam slots + a best model
        needed = sum(sizes) + sum(best) or 16 * sum(
            int(w.shape.num_elements() or 0) for w in getattr(self, "_weights", ()))
        return disk_full_guard(
            self.run_dir, what, "output_dir", needed=needed or None,
            cleanup=lambda: [*ckpt.glob("*_temp*"), *self.run_dir.glob(".*.tmp*")])

    def _initial_epoch(self, model, val_data, on_epoch_end, save_best, verbose) -> None:
        """Epoch 0: the model before its first update, scored on the validation data."""
        if val_data is None:
            raise ValueError("evaluate_initial needs val_data")
        t0 = time.perf_counter()
        seed = data_seed(self.seed, 0, self.shuffle)  # epoch 1's validation data
        scores = model.evaluate(val_data(0, None if seed is None else seed + 1), verbose=0,
                                return_dict=True)
        logs: dict[str, Any] = {"epoch": 0}
        # no training happened: the training columns are empty, the validation ones measured
        logs.update({k: math.nan for k in scores})
        logs.update({f"val_{k}": float(v) for k, v in scores.items()})
        logs["epoch_time_s"] = time.perf_counter() - t0
        self._finish_epoch(0, logs, on_epoch_end, save_best)
        if verbose:
            shown = {k: round(v, 4) for k, v in logs.items() if k.startswith("val_")}
            log.info("epoch 0 (before training): %s", shown)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 07 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def epoch_line(name: str, epoch: int, epochs: int, seconds: list[float], monitor: str | None,
               value: float | None, now: float | None = None) -> str:
    """The console line of a finished epoch: its time, the selection value and, while epochs
    remain, the time left (mean epoch time of this process x epochs left) and the clock time
    it ends (an upper bound where early stopping may end it sooner)."""
    text = f"{name}: epoch {epoch}/{epochs} done in {duration(seconds[-1])}"
    if monitor and value is not None and math.isfinite(float(value)):
        text += f", {monitor} {float(value):.4f}"
    left = epochs - epoch
    if left > 0 and seconds:
        eta = sum(seconds) / len(seconds) * left
        end = time.localtime((time.time() if now is None else now) + eta)
        text += f"; about {duration(eta)} left (ETA {time.strftime('%H:%M', end)})"
    return text


def _progress(line: str) -> None:
    """A line of the Keras progress display (stdout, as Keras' own progress bar writes it; not
    a log record: ``verbose`` switches it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress output with the stage's real epoch count (``Epoch 7/20``) and the epoch's
    unmeasured values shown as ``n/a`` instead of Keras' 0.0000."""

    def __init__(self, total_epochs: int):
        super().__init__(count_mode="steps")
        self.total_epochs = int(total_epochs)
        self.hidden: tuple[str, ...] = ()

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose:
            _progress(f"Epoch {epoch + 1}/{self.total_epochs}")

    def _visible(self, logs):
        if not logs or not self.hidden:
            return logs
        return {k: v for k, v in logs.items() if k not in self.hidden}

    def _batch_update_progbar(self, batch, logs=None):
        super()._batch_update_progbar(batch, self._visible(logs))

    def _finalize_progbar(self, logs, counter):
        super()._finalize_progbar(self._visible(logs), counter)
        if self.verbose and self.hidden:
            _progress(f"  n/a (not measured this epoch): {', '.join(self.hidden)}")


class _Board:
    """TensorBoard scalars of the epoch logs: ``train/`` and ``validation/`` event files, each
    opened once for the whole loop (``val_`` prefixed keys go to ``validation``)."""

    def __init__(self, log_dir: pathlib.Path):
        self.log_dir = log_dir
        self.writers: dict[str, Any] = {}

    def _writer(self, phase: str):
        if phase not in self.writers:
            record_written([self.log_dir], tree=True)  # TensorFlow appends its event files
            self.writers[phase] = tf.summary.create_file_writer(str(make_dirs(self.log_dir / phase)))
        return self.writers[phase]

    def write(self, epoch: int, logs: Mapping[str, Any]) -> None:
        for key, value in logs.items():
            if key == "epoch" or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            phase, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(phase).as_default():
                tf.summary.scalar(f"epoch_{name}", float(value), step=epoch)
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
