import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_search_runs_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.training.mirrored_search", str(tmp_path / "run")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["frozen_unchanged"]
    row = report["history"][0]
    assert math.isfinite(float(row["loss_train_search"])) and math.isfinite(float(row["loss_val_search"]))
    arch = json.loads((tmp_path / "run" / "arch" / "epoch_001.json").read_text())
    assert not np.allclose(arch["alpha"], 1.0)
    assert (tmp_path / "run" / "genotypes" / "epoch_001.json").is_file()
