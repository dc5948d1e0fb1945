"""Fitting a model (``iac_tf.training.fit``) on tiny models: the loss, the best checkpoint, the
history and the summary, epoch 0, the selection metric, patience and resume; and the training
settings it reads.

Covers: iac_tf/config/stages.py
"""

import csv
import json

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.config import ConfigError, from_dict
from iac_tf.config.stages import Stage1Config, Stage3Config, TrainingSettings
from iac_tf.training.fit import train_model, unconverged
from tests.tiny import batched, disc_data, tiny_unet


def _cfg(**kw):
    base = dict(epochs=3, batch_size=4, learning_rate=1e-2, verbose=0)
    base.update(kw)
    return TrainingSettings(**base)


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


def test_fit_lowers_dice_loss_and_writes_best_checkpoint(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = disc_data(16)
    model = tiny_unet()
    result = train_model(model, batched(x, y), batched(x[:8], y[:8]), _cfg(epochs=6), tmp_path)
    losses = [float(r["loss"]) for r in result.history]
    assert losses[-1] < losses[0]
    assert (tmp_path / "best_model.keras").is_file()
    assert (tmp_path / "history.csv").is_file()
    # TensorBoard: one event file per phase for the whole run (not one per epoch).
    events = sorted(p.parent.name for p in (tmp_path / "tensorboard").rglob("*tfevents*"))
    assert events == ["train", "validation"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    best = max(float(r["val_soft_dice"]) for r in result.history)
    assert summary["best_val_soft_dice"] == pytest.approx(best, abs=1e-5)
    # The saved best model predicts like a model restored at that epoch would: it loads and runs.
    loaded = keras.models.load_model(tmp_path / "best_model.keras", compile=False)
    assert loaded.predict(x[:2], verbose=0).shape == (2, 32, 32, 1)


def test_resume_keeps_finished_epochs(tmp_path, capsys):
    keras.utils.set_random_seed(1)
    x, y = disc_data(8)
    model = tiny_unet()
    train_model(model, batched(x, y), batched(x, y), _cfg(epochs=2), tmp_path)
    first_rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(first_rows) == 3  # header + 2 epochs
    # "Killed" after 2 epochs; a new process rebuilds the model and asks for 4 epochs.
    keras.backend.clear_session()
    model2 = tiny_unet()
    capsys.readouterr()
    result = train_model(model2, batched(x, y), batched(x, y), _cfg(epochs=4, verbose=2), tmp_path)
    out = capsys.readouterr().out
    # The epoch counter shows the real position, from where the run resumed.
    assert "Epoch 3/4" in out and "Epoch 4/4" in out
    assert "Epoch 1/" not in out and "Epoch 3/3" not in out and "Epoch 4/4\n" in out
    assert [int(r["epoch"]) for r in result.history] == [1, 2, 3, 4]
    # Epochs 1-2 were not retrained: their rows are unchanged.
    assert (tmp_path / "history.csv").read_text().splitlines()[:3] == first_rows
    # The restored optimiser continued counting iterations (2 steps/epoch * 4 epochs).
    assert int(model2.optimizer.iterations.numpy()) == 8


def test_stage1_config_rejects_unknown_and_wrong_types():
    with pytest.raises(ConfigError, match="stage1.batchsize"):
        from_dict(Stage1Config, {"batchsize": 8}, "stage1")
    with pytest.raises(ConfigError, match="stage1.epochs"):
        from_dict(Stage1Config, {"epochs": "many"}, "stage1")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        from_dict(Stage1Config, {"epochs": 0}, "stage1")
    cfg = from_dict(Stage1Config, {"learning_rate": "1e-3", "batch_size": 8}, "stage1")
    assert cfg.learning_rate == 1e-3 and cfg.batch_size == 8 and cfg.epochs == 200


def test_history_rows_and_summary_of_a_fit(tmp_path):
    """One history row per epoch with the training and validation scores, the same rows in
    history.csv; the summary counts the epochs and flags a best epoch in the last 10 %."""
    keras.utils.set_random_seed(0)
    x, y = disc_data(8, size=16)
    model = tiny_unet(size=16, levels=1)
    result = train_model(model, batched(x, y), batched(x, y), _cfg(monitor="val_case_dice"),
                         tmp_path, case_scorer=Scripted([0.1, 0.2, 0.3]))
    assert [int(r["epoch"]) for r in result.history] == [1, 2, 3]
    for row in result.history:
        assert {"loss", "soft_dice", "val_loss", "val_soft_dice", "val_case_dice"} <= set(row)
    with (tmp_path / "history.csv").open(newline="") as fh:
        assert list(csv.DictReader(fh)) == result.history
    assert [float(r["val_case_dice"]) for r in result.history] == pytest.approx([0.1, 0.2, 0.3])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["best_epoch"], summary["epochs_run"], summary["completed_epochs"]) == (3, 3, 3)
    assert summary["best_epoch_in_last_10_percent"] is True and summary["stopped_early"] is False
    assert summary["epoch0_evaluated"] is False and summary["best_score"] == pytest.approx(0.3)
    assert summary["best_val_soft_dice"] == pytest.approx(float(result.history[2]["val_soft_dice"]))
    assert summary["params"] == model.count_params()
    assert summary["trainable_params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_a_stage3_section_gives_its_training_settings():
    """``unet_continued`` trains with a Stage III section's training keys only."""
    s3 = Stage3Config(epochs=7, patience=2, monitor="val_case_dice", implant_mode="residual",
                      cell_channels=4)
    settings = s3.training()
    assert type(settings) is TrainingSettings and not hasattr(settings, "implant_mode")
    assert (settings.epochs, settings.patience, settings.monitor) == (7, 2, "val_case_dice")
    assert settings.evaluate_initial is True  # Stage III's default, not the base's
    assert Stage1Config(epochs=5).training() == TrainingSettings(epochs=5)
