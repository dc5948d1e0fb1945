"""The argument checks of the search-space layers: positive ints (never a bool) and the
``input0_upsampling`` factor pair, errors naming the owner and the key."""

import numpy as np
import pytest

from iac_tf.search.checks import check_positive_int, check_upsampling


@pytest.mark.parametrize("value", [1, 4, 10**6])
def test_positive_ints_pass_unchanged(value):
    assert check_positive_int("SearchCell", "C", value) is value


@pytest.mark.parametrize("value", [0, -3, True, False, 2.0, "4", None, np.int64(4)])
def test_anything_else_names_owner_and_key(value):
    with pytest.raises(ValueError, match=r"^SearchCell: C must be a positive int, got "):
        check_positive_int("SearchCell", "C", value)


@pytest.mark.parametrize("size, expected", [(None, None), (2, (2, 2)), ((2, 3), (2, 3)),
                                            ([1, 4], (1, 4))])
def test_upsampling_factors(size, expected):
    assert check_upsampling("cell", size) == expected


@pytest.mark.parametrize("size", [0, (2,), (2, 2, 2), (2, 0), (2, True), (2.0, 2)])
def test_bad_upsampling_factors(size):
    with pytest.raises(ValueError, match="cell: input0_upsampling must be None or two positive ints"):
        check_upsampling("cell", size)
