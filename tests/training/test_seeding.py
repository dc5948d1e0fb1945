"""Seeds in one place: the shuffle seed of an epoch is a pure function of the run seed and the
epoch, ``None`` without shuffling; one dataset or a factory serve every epoch alike."""

import numpy as np

from iac_tf._keras import tf
from iac_tf.training.seeding import as_epoch_fn, data_seed, epoch_seed, seed_everything


def test_epoch_seeds_are_pure_and_distinct():
    assert epoch_seed(0, 0) == 0 and epoch_seed(1, 2) == 1_000_005
    assert epoch_seed(3, 7) == (3 * 1_000_003 + 7) % (2**31 - 1)
    seeds = {epoch_seed(seed, epoch) for seed in range(3) for epoch in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**31 - 1 for s in seeds)
    assert epoch_seed(2**40, 5) < 2**31 - 1  # a valid TF seed whatever the run seed


def test_data_seed_is_none_without_shuffling():
    assert data_seed(4, 2, shuffle=True) == epoch_seed(4, 2)
    assert data_seed(4, 2, shuffle=False) is None


def test_seed_everything_repeats_python_numpy_and_tensorflow():
    import random

    def draw():
        return random.random(), np.random.rand(), float(tf.random.uniform(()))

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_as_epoch_fn():
    ds = tf.data.Dataset.range(3)
    fn = as_epoch_fn(ds)
    assert fn(0, None) is ds and fn(5, 123) is ds

    def factory(epoch, seed):
        return tf.data.Dataset.range(epoch)

    assert as_epoch_fn(factory) is factory and as_epoch_fn(None) is None
