"""find_skip_connections on hand-written U-Nets: levels, names, shapes, order, rejections."""

import inspect
import sys

import pytest

from iac_tf._keras import keras
from iac_tf.implant import NoSkipConnectionsError, SkipConnection, find_skip_connections
from tests.implant import unets

# (builder, kwargs, expected [(concat_name, up_index, skip_name, up_shape, skip_shape, out_shape)])
CASES = {
    "plain": (
        unets.plain_unet,
        {},
        [
            ("dec0_concat", 0, "enc1_relu", (16, 16, 8), (16, 16, 8), (16, 16, 16)),
            ("dec1_concat", 0, "enc0_relu", (32, 32, 4), (32, 32, 4), (32, 32, 8)),
        ],
    ),
    "plain_dynamic": (
        unets.plain_unet,
        {"input_shape": (None, None, 3)},
        [
            ("dec0_concat", 0, "enc1_relu", (None, None, 8), (None, None, 8), (None, None, 16)),
            ("dec1_concat", 0, "enc0_relu", (None, None, 4), (None, None, 4), (None, None, 8)),
        ],
    ),
    "resize_skip_up_order": (
        unets.resize_unet,
        {},
        [
            ("concatenate", 1, "e1_relu", (16, 16, 8), (16, 16, 8), (16, 16, 16)),
            ("concatenate_1", 1, "e0_relu", (32, 32, 8), (32, 32, 4), (32, 32, 12)),
        ],
    ),
    "resize_dynamic": (
        unets.resize_unet,
        {"input_shape": (None, None, 1)},
        [
            ("concatenate", 1, "e1_relu", (None, None, 8), (None, None, 8), (None, None, 16)),
            ("concatenate_1", 1, "e0_relu", (None, None, 8), (None, None, 4), (None, None, 12)),
        ],
    ),
    "nested_encoder": (
        unets.nested_encoder_unet,
        {},
        [
            ("cat1", 0, "encoder", (16, 16, 16), (16, 16, 8), (16, 16, 24)),
            ("cat0", 0, "encoder", (32, 32, 8), (32, 32, 4), (32, 32, 12)),
        ],
    ),
    "wrapped_twice": (
        unets.wrapped_unet,
        {},
        [
            ("dec0_concat", 0, "enc1_relu", (16, 16, 8), (16, 16, 8), (16, 16, 16)),
            ("dec0_concat", 0, "enc1_relu", (16, 16, 8), (16, 16, 8), (16, 16, 16)),
            ("dec1_concat", 0, "enc0_relu", (32, 32, 4), (32, 32, 4), (32, 32, 8)),
            ("dec1_concat", 0, "enc0_relu", (32, 32, 4), (32, 32, 4), (32, 32, 8)),
        ],
    ),
    "tf_concat": (
        unets.tf_concat_unet,
        {},
        [
            ("tf.concat", 1, "t1_relu", (16, 16, 8), (16, 16, 8), (16, 16, 16)),
            ("tf.concat_1", 0, "t0_relu", (32, 32, 8), (32, 32, 4), (32, 32, 12)),
        ],
    ),
    "shared_layers": (
        unets.shared_layers_unet,
        {},
        [
            ("shared_concat", 0, "shared_conv", (16, 16, 8), (16, 16, 8), (16, 16, 16)),
            ("shared_concat", 0, "shared_conv", (32, 32, 8), (32, 32, 8), (32, 32, 16)),
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_skips_found_with_levels_names_and_shapes(case):
    builder, kwargs, expected = CASES[case]
    skips = find_skip_connections(builder(**kwargs))
    assert all(isinstance(s, SkipConnection) for s in skips)
    assert [s.level for s in skips] == list(range(len(expected)))
    got = [
        (s.concat_name, s.up_index, s.skip_name, s.up_shape, s.skip_shape, s.out_shape)
        for s in skips
    ]
    assert got == expected


def test_up_and_upsampling_names():
    skips = find_skip_connections(unets.plain_unet())
    assert [(s.up_name, s.upsampling_name) for s in skips] == [
        ("dec0_up", "dec0_up"),
        ("dec1_up", "dec1_up"),
    ]
    resize = find_skip_connections(unets.resize_unet())
    # The upsampling sits one conv before the concat: up_name is the conv, the op is the resize.
    assert resize[0].upsampling_name == "tf.image.resize"
    assert resize[0].up_name != resize[0].upsampling_name
    assert resize[1].upsampling_name.startswith("up_sampling2d")


def test_no_skip_connection_error_lists_each_concat_and_why():
    with pytest.raises(NoSkipConnectionsError) as info:
        find_skip_connections(unets.no_skip_net())
    error = info.value
    assert isinstance(error, ValueError)
    assert [name for name, _ in error.inspected] == ["branches", "three_way"]
    reasons = dict(error.inspected)
    assert "no input is produced by an upsampling op" in reasons["branches"]
    assert "has 3 inputs" in reasons["three_way"]
    assert "no_skip_net" in str(error) and "branches" in str(error)


def test_model_without_concatenate_is_reported():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3)(inputs), name="plain_cnn")
    with pytest.raises(NoSkipConnectionsError, match="no Concatenate layer"):
        find_skip_connections(model)


def test_both_inputs_upsampled_is_rejected():
    inputs = keras.Input((8, 8, 2))
    a = keras.layers.UpSampling2D()(inputs)
    b = keras.layers.Conv2DTranspose(2, 2, strides=2)(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate(name="ups")([a, b]))
    with pytest.raises(NoSkipConnectionsError, match="both inputs are upsampled"):
        find_skip_connections(model)


def test_subclassed_model_is_a_clear_error():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional"):
        find_skip_connections(Net())


def test_walk_is_not_recursive():
    """A 150-layer chain U-Net walked with only a few frames of recursion headroom."""
    model = unets.plain_unet()
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for i in range(150):
        x = keras.layers.Activation("linear", name=f"deep_{i}")(x)
    deep = keras.Model(inputs, model(x))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        skips = find_skip_connections(deep)
    finally:
        sys.setrecursionlimit(limit)
    assert len(skips) == 2
