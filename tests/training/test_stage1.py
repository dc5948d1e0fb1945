import json

import pytest

from iac_tf._keras import keras
from iac_tf.config import ConfigError, from_dict
from iac_tf.training.stage1 import Stage1Config, train_model
from tests.tiny import batched, disc_data, tiny_unet


def _cfg(**kw):
    base = dict(epochs=4, batch_size=4, learning_rate=1e-2, verbose=0)
    base.update(kw)
    return Stage1Config(**base)


def test_stage1_lowers_dice_loss_and_writes_best_checkpoint(tmp_path):
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


def test_stage1_resume_keeps_finished_epochs(tmp_path, capsys):
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
