"""Channel shuffle permutation against an explicit NumPy loop."""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.search import channel_shuffle
from tests.search.reference import channel_shuffle as channel_shuffle_np


@pytest.mark.parametrize("C,K", [(16, 4), (16, 2), (12, 3), (8, 8), (6, 1)])
def test_matches_reference(C, K):
    x = np.random.default_rng(0).normal(size=(2, 3, 5, C)).astype(np.float32)
    np.testing.assert_array_equal(channel_shuffle(tf.constant(x), K).numpy(), channel_shuffle_np(x, K))


def test_hand_permutation_and_inverse():
    x = tf.reshape(tf.range(8, dtype=tf.float32), (1, 1, 1, 8))
    # groups (0 1 | 2 3 | 4 5 | 6 7) interleaved: 0 2 4 6 1 3 5 7
    np.testing.assert_array_equal(channel_shuffle(x, 4).numpy().ravel(), [0, 2, 4, 6, 1, 3, 5, 7])
    # shuffling with C/K groups undoes shuffling with K groups
    np.testing.assert_array_equal(channel_shuffle(channel_shuffle(x, 4), 2).numpy(), x.numpy())


def test_dynamic_batch_in_tf_function():
    fn = tf.function(lambda t: channel_shuffle(t, 4),
                     input_signature=[tf.TensorSpec((None, None, None, 8), tf.float32)])
    x = np.arange(16, dtype=np.float32).reshape(2, 1, 1, 8)
    np.testing.assert_array_equal(fn(x).numpy(), channel_shuffle_np(x, 4))


@pytest.mark.parametrize("K", [3, 0, 2.0])
def test_bad_groups(K):
    with pytest.raises(ValueError, match="groups|divisible"):
        channel_shuffle(tf.zeros((1, 2, 2, 8)), K)
