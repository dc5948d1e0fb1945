"""Seeds and data order for every stage, in one place.

A run has one seed (``seed:`` of the experiment). :func:`seed_everything` seeds Python, NumPy and
TensorFlow once per unit of training, at its start; :func:`epoch_seed` derives the shuffle seed
of each epoch from it, so the data order of epoch ``e`` is a pure function of ``(seed, e)`` and a
resumed run replays the batches an uninterrupted run would have seen. The epoch loop
(:mod:`iac_tf.training.loop`) is the only caller of :func:`epoch_seed`: data factories receive
the epoch's seed, or ``None`` when the stage does not shuffle.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from iac_tf._keras import keras, tf

#: ``(epoch (0-based), shuffle seed or None) -> batched dataset``
EpochDataFn = Callable[[int, Optional[int]], tf.data.Dataset]
#: a dataset that is the same every epoch, or an :data:`EpochDataFn`
DataSource = Union[tf.data.Dataset, EpochDataFn]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch (0-based): a pure function of the run seed and the epoch."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


def data_seed(seed: int, epoch: int, shuffle: bool) -> int | None:
    """What the loop hands a data factory for ``epoch``: its shuffle seed, or ``None`` (no
    shuffling)."""
    return epoch_seed(seed, epoch) if shuffle else None


def as_epoch_fn(data: DataSource | None) -> EpochDataFn | None:
    """Turn a dataset (same every epoch) or an :data:`EpochDataFn` into the function."""
    if data is None or (callable(data) and not isinstance(data, tf.data.Dataset)):
        return data
    return lambda epoch, seed: data
