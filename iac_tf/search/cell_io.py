"""What the search and the discrete cell share: input checks, preprocessing, output projection.

Both cells take ``[input0, input1, ...]`` with ``input0`` the upsampled decoder features and
``input1`` the encoder skip (the two tensors the U-Net concatenates, Fig. 2), map each to C
channels with ReLU-1x1 conv-BN, and map the concatenation of their intermediate nodes back to
``out_channels`` (the channel count of the replaced concatenation) with a 1x1 convolution.
"""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.search.operations import ReLUConvBN, build_sublayer


def check_cell_inputs(owner: str, shape0, shape1, upsampling=(1, 1)) -> None:
    """Both inputs NHWC with known channel counts, ``input0``'s H and W times ``upsampling``
    equal to ``input1``'s."""
    shape0, shape1 = tf.TensorShape(shape0), tf.TensorShape(shape1)
    if shape0.rank != 4 or shape1.rank != 4:
        raise ValueError(
            f"{owner}: input0 and input1 must be (B, H, W, C) tensors, got {shape0} and {shape1}"
        )
    if shape0[-1] is None or shape1[-1] is None:
        raise ValueError(f"{owner}: channel counts must be known, got {shape0} and {shape1}")
    for axis, label, factor in ((1, "height", upsampling[0]), (2, "width", upsampling[1])):
        a, b = shape0[axis], shape1[axis]
        if a is not None and b is not None and a * factor != b:
            upsampled = f" (input0 upsampled {factor}x)" if factor != 1 else ""
            raise ValueError(
                f"{owner}: input0 {shape0} and input1 {shape1} differ in {label}{upsampled}; the "
                "cell needs the upsampled decoder tensor and the encoder skip at the same resolution"
            )


def build_io_layers(cell, shape0, shape1, affine: bool):
    """Create and build ``cell.preprocess0/1`` (to C) and ``cell.output_conv`` (to out_channels)."""
    shape0, shape1 = tf.TensorShape(shape0), tf.TensorShape(shape1)
    cell.preprocess0 = ReLUConvBN(cell.C, affine, name="preprocess0", dtype=cell.dtype_policy)
    cell.preprocess1 = ReLUConvBN(cell.C, affine, name="preprocess1", dtype=cell.dtype_policy)
    cell.output_conv = keras.layers.Conv2D(
        cell.out_channels, 1, use_bias=True, name="output_conv", dtype=cell.dtype_policy
    )
    build_sublayer(cell.preprocess0, shape0)
    build_sublayer(cell.preprocess1, shape1)
    build_sublayer(cell.output_conv, shape1[:-1].concatenate([cell.steps * cell.C]))


def output_shape(cell, shape1):
    """``input1``'s shape (the resolution of the skip) with ``out_channels`` channels."""
    return tf.TensorShape(shape1)[:-1].concatenate([cell.out_channels])


def static_training(training):
    """``training`` as a Python bool (None counts as False, like Keras' BatchNorm default);
    None when it is a tensor whose value is only known at run time."""
    if training is None:
        return False
    if isinstance(training, (bool, int)):
        return bool(training)
    value = tf.get_static_value(training)
    return None if value is None else bool(value)
