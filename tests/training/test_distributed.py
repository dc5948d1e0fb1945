import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _two_cpus(module: str, out: pathlib.Path) -> dict:
    """Run ``tests.training.<module>`` in a fresh process (its two logical CPUs must be set up
    before TensorFlow starts) and return the JSON report it prints last."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", f"tests.training.{module}", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_search_runs_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    report = _two_cpus("mirrored_search", tmp_path / "run")
    assert report["replicas"] == 2
    assert report["frozen_unchanged"]
    row = report["history"][0]
    assert math.isfinite(float(row["loss_train_search"])) and math.isfinite(float(row["loss_val_search"]))
    arch = json.loads((tmp_path / "run" / "arch" / "epoch_001.json").read_text())
    assert not np.allclose(arch["alpha"], 1.0)
    assert (tmp_path / "run" / "genotypes" / "epoch_001.json").is_file()


def test_stage1_and_stage3_train_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    report = _two_cpus("mirrored_training", tmp_path / "run")
    assert report["replicas"] == [2, 2]
    assert report["frozen_unchanged"]  # Stage III trains the cells only, on both replicas
    assert math.isfinite(report["stage1_val_soft_dice"]) and math.isfinite(report["stage3_val_soft_dice"])
    for stage in ("stage1", "stage3"):
        assert (tmp_path / "run" / stage / "best_model.keras").is_file()


def test_a_unit_with_distribute_mirrored_trains_inside_the_strategy(monkeypatch):
    from iac_tf.pipeline import units

    entered = []

    class Fake:
        def scope(self):
            import contextlib

            entered.append(True)
            return contextlib.nullcontext()

    monkeypatch.setattr(units.tf.distribute, "MirroredStrategy", Fake)
    monkeypatch.setattr(units, "_MIRRORED", {})
    first = units.strategy("mirrored")
    assert isinstance(first, Fake) and units.strategy("mirrored") is first  # one per process
    assert not isinstance(units.strategy("none"), Fake)
    first.scope()
    assert entered == [True]
