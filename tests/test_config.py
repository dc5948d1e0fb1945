"""Typed experiment configs: errors name the key, values are converted and round-trip, the sample
loads with overrides, loading a config imports no TensorFlow.

Covers: iac_tf/config/experiment.py
"""

import dataclasses
import pathlib
from typing import Literal

import pytest

from iac_tf.config import ConfigError, from_dict, load_config, to_dict
from iac_tf.config.experiment import ExperimentConfig, load_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Inner:
    k: int = 4
    mode: Literal["tan", "softmax"] = "tan"


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = dataclasses.field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)
    path: str | None = None
    lr: float = 1e-3


@pytest.mark.parametrize("data, key", [
    ({"name": "a", "bogus": 1}, "bogus"),
    ({"name": "a", "inner": {"kk": 1}}, "inner.kk"),
    ({"name": "a", "inner": {"k": "4"}}, "inner.k"),
    ({"name": "a", "inner": {"mode": "sin"}}, "inner.mode"),
    ({"name": "a", "sizes": [1, "x"]}, "sizes[1]"),
    ({"name": 3}, "name"),
    ({"name": "a", "lr": True}, "lr"),
    ({}, "name"),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        from_dict(Outer, data)


def test_values_are_converted_and_round_trip(tmp_path):
    cfg = from_dict(Outer, {"name": "a", "sizes": [3, 4], "lr": "1e-4", "inner": {"mode": "softmax"}})
    assert cfg == Outer(name="a", sizes=(3, 4), lr=1e-4, inner=Inner(mode="softmax"))
    assert from_dict(Outer, to_dict(cfg)) == cfg
    path = tmp_path / "c.yaml"
    path.write_text("name: b\npath: null\n")
    assert load_config(Outer, path) == Outer(name="b")
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Outer, path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, path)


def test_sample_experiment_loads_with_overrides():
    cfg = load_experiment(ROOT / "experiments" / "sample.yaml", {"stage2.epochs": 3, "unet.backbone": "vgg16"})
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.stage2.epochs == 3 and cfg.unet.backbone == "vgg16"
    assert cfg.stage3.learning_rate == 1e-3 and cfg.stage2.edge_norm == "tan"
    assert cfg.run_dir == pathlib.Path("runs") / "sample_base"
    with pytest.raises(ConfigError, match="stage2: warmup_epochs must be in"):
        load_experiment(ROOT / "experiments" / "sample.yaml", {"stage2.warmup_epochs": 99})


def test_loading_a_config_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys\nimport iac_tf.config.experiment as e\ncfg = e.load_experiment('experiments/sample.yaml')\n"
            "assert cfg.stage2.weight_lr(1) > 0\nprint('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_the_config_names_every_comparison_method():
    from iac_tf.comparisons import METHODS
    from iac_tf.config.experiment import COMPARISON_METHODS

    assert sorted(COMPARISON_METHODS) == sorted(METHODS)
