"""The comparison modules' shared pieces: the replaced concatenation's channel order, its
checks, and the known channel count they need."""

import numpy as np
import pytest

from iac_tf._keras import tf
from iac_tf.comparisons._common import channels, check_up_index, decoder_concat


def test_decoder_concat_keeps_the_original_order():
    up = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    skip = -np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(decoder_concat(up, skip, 0).numpy(),
                                  np.concatenate([up, skip], -1))
    np.testing.assert_array_equal(decoder_concat(up, skip, 1).numpy(),
                                  np.concatenate([skip, up], -1))


@pytest.mark.parametrize("bad", [2, -1, None, "0"])
def test_up_index_is_0_or_1(bad):
    assert check_up_index("gate", 0) == 0 and check_up_index("gate", 1) == 1
    with pytest.raises(ValueError, match=r"gate: up_index must be 0 \(\[up, skip\]\) or 1"):
        check_up_index("gate", bad)


def test_channels_must_be_known():
    assert channels((None, 8, 8, 5), "skip", "gate") == 5
    assert channels(tf.TensorShape([2, 4, 4, 3]), "up", "gate") == 3
    with pytest.raises(ValueError, match="gate: the channel count of skip must be known"):
        channels((None, 8, 8, None), "skip", "gate")
