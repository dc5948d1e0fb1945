"""Helpers for the modules that `implant` puts in place of the concatenations.

`implant` calls ``make_module(level, up_shape, skip_shape)`` once per skip connection and then
``module([up, skip])``. A module may be a Keras layer or any callable on Keras tensors; it must
return one tensor of the concatenation's shape ``(H, W, C_up + C_skip)``. The channel order of that
output is the module's business: `implant` does not permute anything.

Give layers deterministic, unique names with `module_name` (e.g. ``module_name("iac", 2)`` is
``"iac_level2"``); `implant` rejects a module layer whose name is already taken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from iac_tf._keras import keras

MakeModule = Callable[[int, tuple, tuple], Any]


def module_name(prefix: str, level: int) -> str:
    """The name of the module implanted at ``level``: ``f"{prefix}_level{level}"``."""
    return f"{prefix}_level{level}"


def original_concat(skips: Sequence[Any], prefix: str = "concat") -> MakeModule:
    """A ``make_module`` that rebuilds each skip's concatenation exactly (the Stage I op).

    Each module is a new ``Concatenate(axis=-1)`` named ``module_name(prefix, level)`` that
    concatenates in the original order (``[skip, up]`` where the U-Net had it so, see
    `SkipConnection.up_index`), so implanting it leaves the model's output bit-identical.

    Args:
        skips: the U-Net's skip connections, from `find_skip_connections`.
        prefix: the layers' name prefix.
    """
    up_index = {skip.level: skip.up_index for skip in skips}

    def make_module(level: int, up_shape: tuple, skip_shape: tuple) -> Callable:
        concat = keras.layers.Concatenate(axis=-1, name=module_name(prefix, level))

        def module(inputs: Sequence[Any]) -> Any:
            up, skip = inputs
            return concat([up, skip] if up_index[level] == 0 else [skip, up])

        return module

    return make_module
