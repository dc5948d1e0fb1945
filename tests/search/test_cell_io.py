"""What both cells share (``iac_tf/search/cell_io.py``): the input checks, the preprocessing and
output projection layers with their weight shapes, the output shape, and the static training flag.
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search.cell_io import build_io_layers, check_cell_inputs, output_shape, static_training


class _Host(keras.layers.Layer):
    """The attributes ``build_io_layers`` reads from a cell: C, out_channels, steps, dtype_policy."""

    def __init__(self, C, out_channels, steps, **kwargs):
        super().__init__(**kwargs)
        self.C, self.out_channels, self.steps = C, out_channels, steps


@pytest.mark.parametrize("shape0, shape1, upsampling", [
    ((2, 8, 8, 3), (2, 8, 8, 5), (1, 1)),
    ((None, None, None, 3), (None, 8, 8, 5), (1, 1)),  # unknown sizes are not compared
    ((2, 4, 8, 3), (2, 8, 8, 5), (2, 1)),
    ((2, 4, 4, 3), (2, 8, 8, 5), (2, 2)),
])
def test_matching_inputs_pass(shape0, shape1, upsampling):
    assert check_cell_inputs("cell", shape0, shape1, upsampling) is None


@pytest.mark.parametrize("shape0, shape1, upsampling, message", [
    ((8, 8, 3), (2, 8, 8, 5), (1, 1), r"^mycell: input0 and input1 must be \(B, H, W, C\)"),
    ((2, 8, 8, 3), (2, 8, 8, 5, 1), (1, 1), "must be \\(B, H, W, C\\)"),
    ((2, 8, 8, None), (2, 8, 8, 5), (1, 1), "^mycell: channel counts must be known"),
    ((2, 8, 8, 3), (2, 8, 8, None), (1, 1), "channel counts must be known"),
    ((2, 4, 8, 3), (2, 8, 8, 5), (1, 1), "differ in height; the cell needs"),
    ((2, 8, 4, 3), (2, 8, 8, 5), (1, 1), "differ in width; the cell needs"),
    ((2, 8, 8, 3), (2, 8, 8, 5), (2, 2), r"differ in height \(input0 upsampled 2x\)"),
    ((2, 4, 8, 3), (2, 8, 8, 5), (2, 2), r"differ in width \(input0 upsampled 2x\)"),
])
def test_mismatched_inputs_are_rejected_naming_the_owner(shape0, shape1, upsampling, message):
    with pytest.raises(ValueError, match=message):
        check_cell_inputs("mycell", shape0, shape1, upsampling)


@pytest.mark.parametrize("affine", [True, False])
def test_io_layers_have_the_shapes_of_the_cell(affine):
    host = _Host(C=4, out_channels=6, steps=3, name="host")
    build_io_layers(host, (None, 4, 4, 3), (None, 4, 4, 5), affine=affine)
    assert host.preprocess0.built and host.preprocess1.built and host.output_conv.built
    assert (host.preprocess0.name, host.preprocess1.name, host.output_conv.name) == (
        "preprocess0", "preprocess1", "output_conv")
    assert host.preprocess0.conv.kernel.shape == (1, 1, 3, 4)  # input0 channels -> C
    assert host.preprocess1.conv.kernel.shape == (1, 1, 5, 4)  # input1 channels -> C
    assert host.preprocess0.conv.bias is None and host.preprocess0.affine is affine
    bn = host.preprocess1.bn
    assert bn.center is affine and bn.scale is affine and bn.moving_mean.shape == (4,)
    assert host.output_conv.kernel.shape == (1, 1, 3 * 4, 6)  # steps * C -> out_channels
    assert host.output_conv.bias.shape == (6,)
    # each weight once, under its layer's own name (unique names are needed by .h5 files)
    names = [w.name for w in host.weights]
    assert len(names) == len(set(names)) and all(("preprocess" in n or "output_conv" in n) for n in names)
    assert len(host.weights) == 2 * (1 + (4 if affine else 2)) + 2


def test_io_layers_follow_the_cell_dtype_policy():
    host = _Host(C=2, out_channels=3, steps=2, dtype="mixed_float16")
    build_io_layers(host, (1, 4, 4, 2), (1, 4, 4, 2), affine=True)
    for layer in (host.preprocess0, host.preprocess1, host.output_conv):
        assert layer.dtype_policy.name == "mixed_float16"
    assert host.output_conv.kernel.dtype == tf.float32  # variables stay float32
    y = host.output_conv(tf.zeros((1, 4, 4, 4)))
    assert y.dtype == tf.float16


def test_io_layers_compute_what_they_say():
    host = _Host(C=2, out_channels=3, steps=2)
    build_io_layers(host, (1, 2, 2, 3), (1, 2, 2, 3), affine=True)
    x = np.random.default_rng(0).normal(size=(1, 2, 2, 3)).astype("float32")
    kernel = host.preprocess0.conv.kernel.numpy()[0, 0]
    expected = np.maximum(x, 0) @ kernel  # ReLU, 1x1 conv; BN at inference with fresh stats
    expected = expected / np.sqrt(1.0 + host.preprocess0.bn.epsilon)
    np.testing.assert_allclose(host.preprocess0(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape1, expected", [
    ((2, 8, 8, 5), (2, 8, 8, 7)),
    ((None, None, None, 5), (None, None, None, 7)),
])
def test_output_shape_is_the_skip_resolution_with_out_channels(shape1, expected):
    host = _Host(C=4, out_channels=7, steps=2)
    shape = output_shape(host, shape1)
    assert isinstance(shape, tf.TensorShape) and shape.as_list() == list(expected)


def test_static_training():
    assert static_training(None) is False
    assert [static_training(v) for v in (False, True, 0, 1)] == [False, True, False, True]
    assert static_training(tf.constant(False)) is False
    assert static_training(tf.constant(True)) is True
    assert static_training(np.bool_(True)) is True
    with tf.Graph().as_default():
        assert static_training(tf.compat.v1.placeholder(tf.bool, [])) is None
    seen = []

    @tf.function
    def traced(flag):
        seen.append(static_training(flag))
        return flag

    traced(tf.constant(True))
    assert seen == [None]  # a traced argument is known only at run time
