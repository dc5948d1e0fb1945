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
    if data is None or (callable(data) and not isinstance(data, tf.data.Dataset)):
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


def load_unet(path) -> keras.Model:
    """Load a trained U-Net saved as ``.keras``, ``.h5`` or a SavedModel folder (tf_keras).

    Errors name the file. The zoo's custom layers are registered by importing ``iac_tf.unets``.
    """
    import pathlib

    import iac_tf.implant.residual  # noqa: F401  (registers ResidualImplant for loading)
    import iac_tf.unets  # noqa: F401  (registers the zoo's custom layers for loading)

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: U-Net file not found")
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: could not load a Keras model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path}: loaded object is {type(model).__name__}, not a Keras model")
    return model
