"""``unchanged_epochs`` / ``stable``: the search's stopping rule, on hand-made genotype lists."""

import pytest

from iac_tf.genotype import Genotype
from iac_tf.genotype.stability import stable, unchanged_epochs

A = Genotype(((("sep_conv_3x3", 0), ("skip_connect", 1)), (("max_pool_3x3", 0), ("dil_conv_3x3", 2))))
B = Genotype(((("sep_conv_5x5", 0), ("skip_connect", 1)), (("max_pool_3x3", 0), ("dil_conv_3x3", 2))))


@pytest.mark.parametrize("genotypes, warmup, expected", [
    ([], 0, 0),
    ([A], 0, 0),                 # the first searched epoch has nothing to equal
    ([A, A], 0, 1),
    ([A, A, A], 0, 2),
    ([A, B, B, B], 0, 2),
    ([B, A, A, A, B], 0, 0),     # a change at the end resets the count
    ([A, A, A, A], 2, 1),        # warm-up epochs 1-2 do not count; epoch 3 is the first searched
    ([A, A, A, A], 3, 0),
    ([A, A, A, A], 4, 0),        # still in the warm-up
])
def test_unchanged_epochs(genotypes, warmup, expected):
    assert unchanged_epochs(genotypes, warmup) == expected


def test_stable_needs_patience_unchanged_epochs():
    assert not stable([A, A, A], 0, None)       # off: never
    assert stable([A, A, A], 0, 2)
    assert not stable([A, A, A], 0, 3)
    assert not stable([A, B, A, A], 0, 2)
