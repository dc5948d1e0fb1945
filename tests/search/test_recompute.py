"""The recomputed separable-convolution block (``iac_tf.search.recompute``) against the Keras layers.

No paper equation: the block is ReLU -> depthwise -> pointwise -> BatchNorm (training) of
:class:`~iac_tf.search.operations.ReLUSepConvBN`, computed keeping only its input for the backward
pass. The reference is the block through its Keras layers (``bn(pw(dw(relu(x))), training=True)``):
outputs, the gradients of the input and of every weight, and the moving statistics it updates.
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search.operations import ReLUSepConvBN, build_sublayer
from iac_tf.search.recompute import can_recompute

C = 6


def _pair(kernel, dilation, repeats, affine):
    layers = [build_sublayer(ReLUSepConvBN(C, kernel, dilation, repeats, affine, name=name),
                             (None, 9, 9, C)) for name in ("keras", "recomputed")]
    rng = np.random.default_rng(kernel + dilation + repeats)
    for a, b in zip(layers[0].weights, layers[1].weights):
        value = rng.normal(size=a.shape).astype(np.float32)
        if "variance" in a.name:
            value = np.abs(value) + 0.5
        a.assign(value)
        b.assign(value)
    return layers


@tf.function
def _step(layer, x, upstream, through_keras_layers):
    with tf.GradientTape() as tape:
        tape.watch(x)
        if through_keras_layers:
            y = x
            for dw, pw, bn in zip(layer.depthwise, layer.pointwise, layer.bns):
                y = bn(pw(dw(tf.nn.relu(y))), training=True)
        else:
            y = layer(x, training=True)
        loss = tf.reduce_sum(y * upstream)
    return [y] + tape.gradient(loss, [x] + layer.trainable_weights)


@pytest.mark.parametrize("kernel,dilation,repeats,affine", [
    (3, 1, 2, True), (5, 1, 2, True), (3, 2, 1, True), (5, 2, 1, True), (3, 1, 2, False)])
def test_same_block_gradients_and_statistics(kernel, dilation, repeats, affine):
    keras_path, recomputed = _pair(kernel, dilation, repeats, affine)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 9, 9, C)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, 9, 9, C)), tf.float32)
    want = _step(keras_path, x, upstream, True)
    got = _step(recomputed, x, upstream, False)
    assert len(got) == 2 + len(recomputed.trainable_weights)
    for name, g, w in zip(["y", "dx"] + [v.name for v in recomputed.trainable_weights], got, want):
        assert g is not None, name
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
    for a, b in zip(keras_path.non_trainable_weights, recomputed.non_trainable_weights):
        assert "moving" in a.name
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-6, err_msg=a.name)
    # the statistics moved (once): a second update would differ from the Keras layers' one
    assert not np.allclose(recomputed.bns[0].moving_mean.numpy(), 0.0)


def test_only_trainable_float32_batch_norms_are_recomputed():
    bn = keras.layers.BatchNormalization()
    bn.build((None, 4, 4, C))
    x32 = tf.zeros((1, 4, 4, C))
    assert can_recompute(x32, bn)
    assert not can_recompute(tf.cast(x32, tf.float16), bn)
    bn.trainable = False  # a frozen Keras BN normalises with its moving statistics
    assert not can_recompute(x32, bn)


def test_frozen_block_runs_in_inference_mode():
    keras_path, recomputed = _pair(3, 1, 1, True)
    recomputed.trainable = False
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 9, 9, C)), tf.float32)
    want = keras_path(x, training=False).numpy()
    np.testing.assert_allclose(recomputed(x, training=True).numpy(), want, rtol=1e-5, atol=1e-5)
