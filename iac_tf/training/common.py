"""Helpers shared by the three stages: seeding, precision policy, optimisers, data callables."""

from __future__ import annotations

import contextlib
from typing import Callable, Union

from iac_tf._keras import keras, tf

DataSource = Union[tf.data.Dataset, Callable[[int], tf.data.Dataset]]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def precision_policy(mixed_precision: bool):
    """Set the global Keras policy (``mixed_float16`` or ``float32``) for model building, and
    restore the previous one afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def as_epoch_fn(data: DataSource | None) -> Callable[[int], tf.data.Dataset] | None:
    """Turn a dataset (same every epoch) or a callable ``epoch -> dataset`` into the callable."""
    if data is None or callable(data) and not isinstance(data, tf.data.Dataset):
        return data
    return lambda epoch: data


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a pure function of the run seed and the epoch index."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


def make_optimizer(name: str, learning_rate, **kwargs) -> keras.optimizers.Optimizer:
    """Build a tf_keras optimiser by name (``adam`` / ``sgd``)."""
    name = name.lower()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, **kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")
