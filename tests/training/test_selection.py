"""Epoch 0, the selection metric, patience and resume, on tiny models."""

import json

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.training.stage1 import Stage1Config, train_model, unconverged
from tests.tiny import batched, disc_data, tiny_unet


def _cfg(**kw):
    base = dict(epochs=3, batch_size=4, learning_rate=1e-2, verbose=0)
    base.update(kw)
    return Stage1Config(**base)


class Scripted:
    """A case scorer returning scripted values, one per call (epoch 0 first)."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self, model):
        value = self.values[self.calls]
        self.calls += 1
        return value


def test_epoch0_is_in_the_history_and_can_be_selected(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = disc_data(8, size=16)
    model = tiny_unet(size=16, levels=1)
    initial = model.predict(x[:2], verbose=0)
    scorer = Scripted([0.9, 0.5, 0.7, 0.6])  # epoch 0 is the best by the case score
    result = train_model(model, batched(x, y), batched(x, y),
                         _cfg(monitor="val_case_dice", evaluate_initial=True), tmp_path,
                         case_scorer=scorer)
    assert [int(r["epoch"]) for r in result.history] == [0, 1, 2, 3]
    row0 = result.history[0]
    assert np.isnan(float(row0["loss"])) and 0 <= float(row0["val_soft_dice"]) <= 1
    assert result.best_epoch == 0 and result.best_score == pytest.approx(0.9)
    best = keras.models.load_model(tmp_path / "best_model.keras", compile=False)
    np.testing.assert_array_equal(best.predict(x[:2], verbose=0), initial)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["selection_metric"] == "val_case_dice" and summary["best_epoch"] == 0
    assert summary["epoch0_evaluated"] is True


def test_selection_metric_is_honoured(tmp_path):
    """The same run selects by val_case_dice when asked, by val_soft_dice otherwise."""
    x, y = disc_data(8, size=16)
    picks = {}
    for monitor in ("val_case_dice", "val_soft_dice"):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        result = train_model(tiny_unet(size=16, levels=1), batched(x, y), batched(x, y),
                             _cfg(monitor=monitor, epochs=4), tmp_path / monitor,
                             case_scorer=Scripted([0.1, 0.8, 0.2, 0.3]))
        soft = [float(r["val_soft_dice"]) for r in result.history]
        case = [float(r["val_case_dice"]) for r in result.history]
        picks[monitor] = result.best_epoch
        values = case if monitor == "val_case_dice" else soft
        assert result.best_epoch == 1 + int(np.argmax(values))
    assert picks["val_case_dice"] == 2
    with pytest.raises(ValueError, match="case_scorer"):
        train_model(tiny_unet(size=16, levels=1), batched(x, y), batched(x, y),
                    _cfg(monitor="val_case_dice"), tmp_path / "none")


def test_patience_stops_and_a_rerun_does_not_continue(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = disc_data(8, size=16)
    cfg = _cfg(epochs=6, monitor="val_case_dice", evaluate_initial=True, patience=2)
    result = train_model(tiny_unet(size=16, levels=1), batched(x, y), batched(x, y), cfg,
                         tmp_path, case_scorer=Scripted([0.5, 0.6, 0.4, 0.3, 0.9, 0.9, 0.9]))
    assert result.stopped_early and [int(r["epoch"]) for r in result.history] == [0, 1, 2, 3]
    keras.backend.clear_session()
    again = train_model(tiny_unet(size=16, levels=1), batched(x, y), batched(x, y), cfg,
                        tmp_path, case_scorer=Scripted([]))
    assert again.stopped_early and len(again.history) == 4 and again.best_epoch == 1


def test_unconverged_flags_the_last_ten_percent():
    assert unconverged(20, 20) and unconverged(19, 20) and not unconverged(18, 20)
    assert unconverged(3, 3) and not unconverged(2, 3)
    assert unconverged(91, 100) and not unconverged(90, 100)


def test_resume_with_epoch0_is_exact(tmp_path):
    """Killed after epoch 1 and resumed: same history rows and the same final weights as an
    uninterrupted run (epoch 0 is not scored twice)."""
    x, y = disc_data(8, size=16)
    cfg = _cfg(epochs=3, evaluate_initial=True)

    def fresh():
        keras.backend.clear_session()
        keras.utils.set_random_seed(5)
        return tiny_unet(size=16, levels=1)

    full = train_model(fresh(), batched(x, y), batched(x, y), cfg, tmp_path / "full")
    full_weights = keras.models.load_model(tmp_path / "full" / "best_model.keras").get_weights()
    model = fresh()
    train_model(model, batched(x, y), batched(x, y), _cfg(epochs=1, evaluate_initial=True),
                tmp_path / "cut")
    model2 = fresh()
    resumed = train_model(model2, batched(x, y), batched(x, y), cfg, tmp_path / "cut")
    assert [r["epoch"] for r in resumed.history] == ["0", "1", "2", "3"]

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]

    assert strip(resumed.history) == strip(full.history)
    assert resumed.best_epoch == full.best_epoch
    cut_weights = keras.models.load_model(tmp_path / "cut" / "best_model.keras").get_weights()
    for a, b in zip(cut_weights, full_weights):
        np.testing.assert_array_equal(a, b)
