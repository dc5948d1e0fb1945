"""``history.csv`` (:class:`CsvHistory`): rows appended atomically, new columns kept, floats
written short, rows of unfinished epochs dropped on resume."""

import math

import numpy as np

from iac_tf.training.history import CsvHistory


def test_rows_append_and_truncate(tmp_path):
    history = CsvHistory(tmp_path / "history.csv")
    assert history.rows() == []
    history.append({"epoch": 1, "loss": 0.123456789})
    history.append({"epoch": 2, "loss": np.float32(0.5), "val_soft_dice": math.nan})
    rows = history.rows()
    # a column that appears later is added; earlier rows leave it empty
    assert (tmp_path / "history.csv").read_text().splitlines()[0] == "epoch,loss,val_soft_dice"
    assert rows == [{"epoch": "1", "loss": "0.123457", "val_soft_dice": ""},
                    {"epoch": "2", "loss": "0.5", "val_soft_dice": "nan"}]
    history.append({"epoch": 3, "loss": 0.25})
    history.truncate(2)  # the checkpoint holds 2 epochs: row 3 belongs to an unfinished one
    assert [r["epoch"] for r in history.rows()] == ["1", "2"]
    history.truncate(2)
    assert len(history.rows()) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")
                and p.name != ".iac-manifest"]  # no temporaries left


def test_truncating_every_row_removes_the_file(tmp_path):
    history = CsvHistory(tmp_path / "history.csv")
    history.append({"epoch": 0, "val_loss": 1.0})
    history.truncate(-1)  # no checkpoint at all: even epoch 0 goes
    assert not history.path.exists() and history.rows() == []
