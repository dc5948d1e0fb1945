"""The console (`iac_tf.console`): the per-epoch line with time and ETA, and the run's log.txt
(records held back until the run folder is the tool's, dropped when it never is).

Covers: iac_tf/training/loop.py
"""

import logging
import time

from iac_tf.console import run_log
from iac_tf.training.loop import duration, epoch_line


def test_durations():
    assert [duration(s) for s in (0.4, 42, 185, 7620)] == ["0 s", "42 s", "3 min 5 s",
                                                           "2 h 07 min"]


def test_epoch_line_has_time_value_and_eta_from_the_mean_epoch():
    now = time.mktime((2026, 1, 2, 10, 0, 0, 0, 0, -1))
    line = epoch_line("stage2", 2, 5, [100.0, 200.0], "val_soft_dice", 0.51234, now=now)
    assert line == ("stage2: epoch 2/5 done in 3 min 20 s, val_soft_dice 0.5123; "
                    "about 7 min 30 s left (ETA 10:07)")
    last = epoch_line("stage1", 5, 5, [10.0], "val_soft_dice", float("nan"))
    assert last == "stage1: epoch 5/5 done in 10 s"


def test_run_log_holds_records_until_the_folder_is_owned(tmp_path):
    log = logging.getLogger("iac_tf.pipeline")
    path = tmp_path / "log.txt"
    owned = {"yes": False}
    with run_log(path, lambda: owned["yes"], "iac run x.yaml"):
        log.warning("checked first")
        assert not path.exists()
        owned["yes"] = True
        log.warning("then written")
    log.warning("after the command: not in the log")
    lines = path.read_text().splitlines()
    assert [line.split(None, 3)[2:] for line in lines] == [
        ["START", "iac run x.yaml"], ["WARNING", "checked first"], ["WARNING", "then written"]]


def test_a_refused_command_writes_no_log(tmp_path):
    path = tmp_path / "log.txt"
    with run_log(path, lambda: False, "iac run"):
        logging.getLogger("iac_tf").warning("refused")
    assert not path.exists()
