"""Per-epoch schedules of Stage II: cosine power annealing of the cell-weight learning rate
(sharpDARTS, Hundt et al. [40]) and the linear ramp of the regularisation coefficient lambda_e
(Algorithm 1).

Both are pure functions of the 1-based epoch, so a resumed run recomputes them exactly. They sit
in the config layer because ``Stage2Config.weight_lr`` / ``reg_lambda`` name the value of each
epoch; the Stage II trainer applies them to its optimiser and to lambda_e every epoch.
"""

from __future__ import annotations

import math


def cosine_power_annealing(epoch: int, epochs: int, lr_max: float, lr_min: float, power: float = 10.0) -> float:
    """Learning rate of ``epoch`` (1-based) out of ``epochs``.

    With the cosine proportion ``c(e) = (1 + cos(pi * e / E)) / 2`` and power ``p >= 1``::

        lr(e) = lr_min + (lr_max - lr_min) * (p ** c(e) - 1) / (p ** c(1) - 1)     (p > 1)
        lr(e) = lr_min + (lr_max - lr_min) * c(e) / c(1)                           (p = 1)

    i.e. the power curve ``p ** (c(e) + 1)`` of sharpDARTS rescaled so that epoch 1 runs at
    ``lr_max`` and the last epoch at ``lr_min``. ``p = 1`` is plain cosine annealing; a larger
    ``p`` decays faster early and slower late. A single-epoch run uses ``lr_max``.
    """
    if epochs < 1 or not 1 <= epoch <= epochs:
        raise ValueError(f"epoch must be in [1, {epochs}], got {epoch}")
    if power < 1:
        raise ValueError(f"power must be >= 1, got {power}")
    if epochs == 1:
        return float(lr_max)

    def c(e: int) -> float:
        return (1.0 + math.cos(math.pi * e / epochs)) / 2.0

    if power == 1:
        proportion = c(epoch) / c(1)
    else:
        proportion = (power ** c(epoch) - 1.0) / (power ** c(1) - 1.0)
    return float(lr_min + (lr_max - lr_min) * proportion)


def linear_ramp(epoch: int, epochs: int, start: float, end: float, first_epoch: int = 1) -> float:
    """``start`` at ``first_epoch`` rising linearly to ``end`` at ``epochs`` (1-based); ``start``
    before ``first_epoch``. Used for the regularisation coefficient lambda_e."""
    if epoch <= first_epoch or epochs <= first_epoch:
        return float(start if epoch <= first_epoch else end)
    t = (epoch - first_epoch) / (epochs - first_epoch)
    return float(start + (end - start) * min(1.0, t))
