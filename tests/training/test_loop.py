"""The checkpointed epoch loop (:class:`EpochLoop`) on the tiniest model (one Dense layer): a run
interrupted after some epochs and resumed in a fresh model continues at the next epoch, replays
the data order an uninterrupted run sees and ends with the same history and weights; rows of an
epoch the checkpoint does not hold are dropped; hooks, best-epoch tracking, early stopping and
epoch 0.

Covers: iac_tf/training/seeding.py, iac_tf/training/history.py
"""

import math

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.errors import UserError
from iac_tf.training.history import CsvHistory
from iac_tf.training.loop import EpochLoop
from iac_tf.training.seeding import data_seed

X = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0]], np.float32) + 0.5).astype(np.float32)


def _model():
    keras.utils.set_random_seed(1)
    x = keras.Input((2,))
    model = keras.Model(x, keras.layers.Dense(1, name="dense")(x))
    model.compile(keras.optimizers.Adam(0.05), loss="mse")
    return model


class Data:
    """An epoch data factory that records the (epoch, seed) it was asked for."""

    def __init__(self):
        self.calls = []

    def __call__(self, epoch, seed):
        self.calls.append((epoch, seed))
        ds = tf.data.Dataset.from_tensor_slices((X, Y))
        return (ds if seed is None else ds.shuffle(8, seed=seed)).batch(2)


def _loop(folder, **kw):
    model = _model()
    kw = {"monitor": "val_loss", "mode": "min", "tensorboard": False, "seed": 5, **kw}
    return model, EpochLoop(folder, {"model": model, "optimizer": model.optimizer}, **kw)


def _without_times(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


def test_a_resumed_run_continues_at_the_next_epoch_like_an_uninterrupted_one(tmp_path):
    model, loop = _loop(tmp_path / "full")
    full = loop.run(model, 4, Data(), Data(), verbose=0)
    assert [r["epoch"] for r in full] == ["1", "2", "3", "4"]
    full_weights = model.get_weights()

    model, loop = _loop(tmp_path / "cut")
    loop.run(model, 2, Data(), Data(), verbose=0)  # "killed" after epoch 2 ...
    # ... after the row of epoch 3 was written but before its checkpoint
    CsvHistory(tmp_path / "cut" / "history.csv").append({"epoch": 3, "loss": 123.0})

    keras.backend.clear_session()
    model, loop = _loop(tmp_path / "cut")  # a new process: a fresh model, the same folder
    train = Data()
    resumed = loop.run(model, 4, train, Data(), verbose=0)
    assert train.calls == [(2, data_seed(5, 2, True)), (3, data_seed(5, 3, True))]
    assert _without_times(resumed) == _without_times(full)  # the stray row 3 is gone
    for got, want in zip(model.get_weights(), full_weights):
        np.testing.assert_array_equal(got, want)
    assert int(model.optimizer.iterations.numpy()) == 16  # 4 epochs x 4 batches
    assert int(loop.best_epoch.numpy()) == 1 + int(np.argmin([float(r["val_loss"]) for r in full]))

    keras.backend.clear_session()
    model, loop = _loop(tmp_path / "cut")
    done = Data()
    assert len(loop.run(model, 4, done, Data(), verbose=0)) == 4 and done.calls == []


def test_hooks_best_epochs_and_unmeasured_values(tmp_path):
    scores = {1: 0.2, 2: 0.6, 3: 0.4}
    saved = []

    def begin(epoch):
        return ("val_extra",) if epoch == 1 else None

    def end(epoch, logs):
        return {"score": scores[epoch]}

    model, loop = _loop(tmp_path, monitor="score", mode="max", shuffle=False)
    train = Data()
    rows = loop.run(model, 3, train, None, on_epoch_begin=begin, on_epoch_end=end,
                    save_best=saved.append, verbose=0)
    assert train.calls == [(0, None), (1, None), (2, None)]  # no shuffling: no seed
    assert saved == [1, 2]  # called when the score improves only
    assert [float(r["best_score"]) for r in rows] == [0.2, 0.6, 0.6]
    assert math.isnan(float(rows[0]["val_extra"])) and rows[1]["val_extra"] == ""
    assert int(loop.best_epoch.numpy()) == 2


def test_patience_stops_and_a_resumed_run_stops_there_too(tmp_path):
    scores = iter([0.5, 0.4, 0.3, 0.9])

    def end(epoch, logs):
        return {"score": next(scores)}

    model, loop = _loop(tmp_path, monitor="score", mode="max", patience=2)
    rows = loop.run(model, 4, Data(), None, on_epoch_end=end, verbose=0)
    assert loop.stopped_early and [r["epoch"] for r in rows] == ["1", "2", "3"]
    keras.backend.clear_session()
    model, loop = _loop(tmp_path, monitor="score", mode="max", patience=2)
    train = Data()
    assert len(loop.run(model, 4, train, None, on_epoch_end=end, verbose=0)) == 3
    assert loop.stopped_early and train.calls == []


def test_stop_hook_ends_the_run_early(tmp_path):
    model, loop = _loop(tmp_path)
    rows = loop.run(model, 5, Data(), Data(), stop=lambda done: done >= 2, verbose=0)
    assert loop.stopped_early and len(rows) == 2


def test_epoch_0_is_scored_once_before_training(tmp_path):
    model, loop = _loop(tmp_path)
    before = model.evaluate(X, Y, verbose=0)
    rows = loop.run(model, 1, Data(), Data(), evaluate_initial=True, verbose=0)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert math.isnan(float(rows[0]["loss"]))
    assert float(rows[0]["val_loss"]) == pytest.approx(before, rel=1e-5)
    keras.backend.clear_session()
    model, loop = _loop(tmp_path)
    val = Data()
    rows = loop.run(model, 2, Data(), val, evaluate_initial=True, verbose=0)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and [c[0] for c in val.calls] == [1]


def test_epoch_0_cannot_be_added_to_a_run_that_began_without_it(tmp_path):
    model, loop = _loop(tmp_path)
    loop.run(model, 1, Data(), Data(), verbose=0)
    keras.backend.clear_session()
    model, loop = _loop(tmp_path)
    with pytest.raises(UserError, match="started without evaluate_initial"):
        loop.run(model, 2, Data(), Data(), evaluate_initial=True, verbose=0)


def test_bad_mode_and_a_monitor_the_epoch_does_not_log(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        _loop(tmp_path / "a", mode="best")
    model, loop = _loop(tmp_path / "b", monitor="val_soft_dice")
    with pytest.raises(KeyError, match="val_soft_dice"):
        loop.run(model, 1, Data(), Data(), verbose=0)
