"""Stage II's schedules against independent references: cosine power annealing of the weight
learning rate and the linear ramp of lambda.

Covers: iac_tf/config/schedules.py, iac_tf/config/stages.py
"""

import math

import numpy as np
import pytest

from iac_tf.config.schedules import cosine_power_annealing, linear_ramp
from iac_tf.training.stage2 import Stage2Config


def _sharpdarts_reference(epochs, lr_max, lr_min, p):
    """The sharpDARTS recipe, written independently: the power curve p**(c+1) over epochs 1..E,
    min-max normalised, mapped onto [lr_min, lr_max]."""
    e = np.arange(1, epochs + 1)
    c = (1 + np.cos(np.pi * e / epochs)) / 2
    curve = c if p == 1 else np.power(p, c + 1)
    curve = (curve - curve.min()) / (curve.max() - curve.min())
    return lr_min + (lr_max - lr_min) * curve


@pytest.mark.parametrize("p", [1.0, 2.0, 10.0])
def test_cosine_power_annealing_matches_reference(p):
    ours = [cosine_power_annealing(e, 20, 0.01, 1e-4, p) for e in range(1, 21)]
    np.testing.assert_allclose(ours, _sharpdarts_reference(20, 0.01, 1e-4, p), rtol=1e-10)
    assert ours[0] == pytest.approx(0.01) and ours[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(ours, ours[1:]))


def test_higher_power_decays_faster_early():
    assert cosine_power_annealing(5, 20, 1.0, 0.0, 10.0) < cosine_power_annealing(5, 20, 1.0, 0.0, 1.0)


def test_schedule_edges_and_errors():
    assert cosine_power_annealing(1, 1, 0.5, 0.0) == 0.5
    with pytest.raises(ValueError):
        cosine_power_annealing(0, 10, 1.0, 0.0)
    with pytest.raises(ValueError):
        cosine_power_annealing(1, 10, 1.0, 0.0, power=0.5)


def test_linear_ramp_and_stage2_lambda():
    assert linear_ramp(1, 11, 0.0, 1.0) == 0.0
    assert linear_ramp(6, 11, 0.0, 1.0) == pytest.approx(0.5)
    assert linear_ramp(11, 11, 0.0, 1.0) == 1.0
    cfg = Stage2Config(epochs=10, warmup_epochs=2, regularizer="beta_darts", reg_lambda_start=0.0, reg_lambda_end=4.0)
    assert [cfg.reg_lambda(e) for e in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert cfg.reg_lambda(10) == 4.0 and 0 < cfg.reg_lambda(6) < 4.0
    assert Stage2Config(regularizer="none").reg_lambda(100) == 0.0
    off = Stage2Config(lr_schedule="constant", weight_learning_rate=0.02)
    assert off.weight_lr(1) == off.weight_lr(200) == 0.02
    assert math.isclose(Stage2Config().weight_lr(1), 0.01) and Stage2Config().weight_lr(200) == 0.0
