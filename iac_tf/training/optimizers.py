"""Optimisers by name (the ``optimizer:`` keys of the stage configs)."""

from __future__ import annotations

from iac_tf._keras import keras


def make_optimizer(name: str, learning_rate, **kwargs) -> keras.optimizers.Optimizer:
    """Build a tf_keras optimiser by name (``adam`` / ``sgd``)."""
    name = name.lower()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, **kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")
