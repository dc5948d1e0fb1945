"""``precision_policy``: the global Keras policy inside the block, and the previous one restored
after it, also when the block raises. Only the policy object is asked for: no GPU needed."""

import pytest

from iac_tf._keras import keras
from iac_tf.training.precision import precision_policy


@pytest.fixture(autouse=True)
def _float32_around():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mixed, name, compute, variables", [
    (False, "float32", "float32", "float32"),
    (True, "mixed_float16", "float16", "float32"),
])
def test_policy_inside_the_block(mixed, name, compute, variables):
    with precision_policy(mixed):
        policy = keras.mixed_precision.global_policy()
        assert (policy.name, policy.compute_dtype, policy.variable_dtype) == (name, compute, variables)
        layer = keras.layers.Dense(2)  # a layer built inside takes the policy
    assert layer.dtype_policy.name == name and layer.compute_dtype == compute
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("before", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("mixed", [False, True])
def test_the_previous_policy_comes_back(before, mixed):
    keras.mixed_precision.set_global_policy(before)
    with precision_policy(mixed):
        assert keras.mixed_precision.global_policy().name == ("mixed_float16" if mixed else "float32")
    assert keras.mixed_precision.global_policy().name == before


@pytest.mark.parametrize("mixed", [False, True])
def test_the_previous_policy_comes_back_when_the_block_raises(mixed):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    with pytest.raises(RuntimeError, match="inside"):
        with precision_policy(mixed):
            raise RuntimeError("inside")
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"


def test_nested_blocks_unwind_in_order():
    with precision_policy(True):
        with precision_policy(False):
            assert keras.mixed_precision.global_policy().name == "float32"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"
