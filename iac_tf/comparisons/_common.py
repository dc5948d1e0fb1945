"""Pieces shared by the comparison modules: the concatenation the frozen decoder expects."""

from __future__ import annotations

from iac_tf._keras import tf


def check_up_index(name: str, up_index) -> int:
    if up_index not in (0, 1):
        raise ValueError(f"{name}: up_index must be 0 ([up, skip]) or 1 ([skip, up]), got {up_index!r}")
    return int(up_index)


def decoder_concat(up, skip, up_index: int):
    """``[up, skip]`` (``up_index == 0``) or ``[skip, up]``: the replaced concatenation's order,
    so the frozen decoder's first convolution sees each channel where it was trained to."""
    return tf.concat([up, skip] if up_index == 0 else [skip, up], axis=-1)


def channels(shape, what: str, name: str) -> int:
    c = tf.TensorShape(shape)[-1]
    if c is None:
        raise ValueError(f"{name}: the channel count of {what} must be known, got shape {shape}")
    return int(c)
