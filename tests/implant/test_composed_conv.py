"""ComposedConv: a 1x1 convolution and the convolution after it as one convolution.

No paper equation: the cell's output 1x1 convolution (Fig. 2) composed with the frozen decoder's.
The reference is the definition, ``outer(inner(h))`` through the two Keras layers, and, for the
composed kernel and the border term, a NumPy computation of the module docstring's formulas.
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant import ComposedConv
from iac_tf.implant.composed_conv import can_compose, composed_output, fusion_saves_flops

C_IN, C_MID, C_OUT = 3, 7, 5


def _pair(padding="same", strides=1, dilation=1, inner_bias=True, outer_bias=False,
          activation=None, kernel=3, seed=0):
    keras.utils.set_random_seed(seed)
    inner = keras.layers.Conv2D(C_MID, 1, use_bias=inner_bias, bias_initializer="random_normal",
                                name="inner")
    outer = keras.layers.Conv2D(C_OUT, kernel, strides=strides, padding=padding,
                                dilation_rate=dilation, use_bias=outer_bias, activation=activation,
                                bias_initializer="random_normal", name="outer")
    inner.build((None, None, None, C_IN))
    outer.build((None, None, None, C_MID))
    return inner, outer


def _h(size=9, batch=2, seed=1):
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, size, size, C_IN)), tf.float32)


CASES = [
    dict(),
    dict(padding="valid"),
    dict(strides=2),
    dict(strides=2, padding="valid"),
    dict(dilation=2),
    dict(inner_bias=False),
    dict(outer_bias=True, activation="relu"),
    dict(kernel=1),
    dict(kernel=5, outer_bias=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_equals_the_two_layers_with_their_gradients(case):
    inner, outer = _pair(**case)
    layer = ComposedConv(inner, outer)
    h = _h()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(h)
        want = outer(inner(h))
        got = layer(h)
        weights = tf.constant(np.random.default_rng(2).normal(size=want.shape), tf.float32)
        loss_want = tf.reduce_sum(want * weights)
        loss_got = tf.reduce_sum(got * weights)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    variables = [h] + inner.trainable_variables
    for g_got, g_want in zip(tape.gradient(loss_got, variables), tape.gradient(loss_want, variables)):
        np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-5, atol=1e-4)
    # the layer only reads the two convolutions' variables; it adds none of its own
    assert {v.ref() for v in layer.weights} == {v.ref() for v in inner.weights + outer.weights}


def test_composed_kernel_and_border_term_against_numpy():
    """Module docstring: W = sum_c W_P[i, c] W_D[u, v, c, o]; the bias of the 1x1 convolution
    becomes D's zero-padded convolution of a constant image (differs at the border)."""
    inner, outer = _pair(inner_bias=True)
    w_p = inner.kernel.numpy()[0, 0]
    w_d = outer.kernel.numpy()
    b_p = inner.bias.numpy()
    h = _h(size=6, batch=1).numpy()
    kernel = np.zeros((3, 3, C_IN, C_OUT))
    for u in range(3):
        for v in range(3):
            kernel[u, v] = w_p @ w_d[u, v]
    padded = np.pad(h[0], ((1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones((6, 6)), 1)
    want = np.zeros((6, 6, C_OUT))
    for y in range(6):
        for x in range(6):
            patch = padded[y:y + 3, x:x + 3]
            want[y, x] = np.einsum("uvi,uvio->o", patch, kernel)
            want[y, x] += np.einsum("uv,c,uvco->o", ones[y:y + 3, x:x + 3], b_p, w_d)
    got = ComposedConv(inner, outer)(h).numpy()[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[0, 0] - got[2, 2], np.einsum("uvi,uvio->o", padded[0:3, 0:3], kernel)
                           - np.einsum("uvi,uvio->o", padded[2:5, 2:5], kernel))  # border differs


def test_get_config_round_trip_and_save_load(tmp_path):
    inner, outer = _pair(outer_bias=True, activation="relu")
    layer = ComposedConv(inner, outer, name="composed")
    h = _h()
    want = layer(h).numpy()
    clone = ComposedConv.from_config(layer.get_config())
    clone.build(h.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(h).numpy(), want, rtol=1e-6, atol=1e-6)
    for key in ("inner", "outer"):  # the layers' own configs (build shapes may differ)
        assert clone.get_config()[key]["config"] == layer.get_config()[key]["config"]

    x = keras.Input((None, None, C_IN))
    model = keras.Model(x, ComposedConv(inner, outer, name="composed")(x))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(h).numpy(), want, rtol=1e-6, atol=1e-6)


def test_mixed_float16_close_to_float32():
    inner, outer = _pair(outer_bias=True)
    h = _h()
    want = outer(inner(h)).numpy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inner16 = keras.layers.Conv2D(C_MID, 1, name="inner16")
        outer16 = keras.layers.Conv2D(C_OUT, 3, padding="same", name="outer16")
        inner16.build((None, None, None, C_IN))
        outer16.build((None, None, None, C_MID))
        inner16.set_weights(inner.get_weights())
        outer16.set_weights(outer.get_weights())
        got = ComposedConv(inner16, outer16)(tf.cast(h, tf.float16))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got.dtype == tf.float16
    assert np.linalg.norm(got.numpy().astype(np.float32) - want) / np.linalg.norm(want) < 2 ** -8


def test_only_plain_conv2d_pairs_compose():
    inner, outer = _pair()
    assert can_compose(inner, outer)
    wide = keras.layers.Conv2D(C_MID, 3)
    activated = keras.layers.Conv2D(C_MID, 1, activation="relu")
    strided = keras.layers.Conv2D(C_MID, 1, strides=2)
    for bad in (wide, activated, strided):
        assert not can_compose(bad, outer)
    for bad_outer in (keras.layers.Conv2DTranspose(C_OUT, 3), keras.layers.DepthwiseConv2D(3),
                      keras.layers.SeparableConv2D(C_OUT, 3), keras.layers.Conv2D(7, 3, groups=7)):
        assert not can_compose(inner, bad_outer)
    with pytest.raises(ValueError, match="1x1, stride-1, linear Conv2D"):
        ComposedConv(wide, outer)


def test_fusion_only_where_it_saves_flops():
    # the paper's cell at the base U-Net's top skip: 4C = 64 -> 192 -> 3x3 conv to 64
    assert fusion_saves_flops(64, 192, 64, (3, 3), (1, 1))
    # more node channels than the concatenation: composing costs more
    assert not fusion_saves_flops(64, 32, 64, (3, 3), (1, 1))
    # a 1x1 consumer with few outputs: c_in * c_out < c_in * c_mid + c_mid * c_out
    assert fusion_saves_flops(64, 192, 16, (1, 1), (1, 1))
    assert not fusion_saves_flops(64, 8, 1000, (1, 1), (1, 1))
    # a stride-2 consumer: its k x k convolution runs on a quarter of the pixels either way
    assert fusion_saves_flops(64, 192, 64, (3, 3), (2, 2))

    class Module:  # what composed_output reads of a cell
        steps, C, out_channels, name = 4, 16, 192, "cell"

    assert composed_output(Module(), keras.layers.Conv2D(64, 3, padding="same"), None) is not None
    Module.out_channels = 32  # 9 * 64 * 64 > 64 * 32 + 9 * 32 * 64
    assert composed_output(Module(), keras.layers.Conv2D(64, 3, padding="same"), None) is None
    assert composed_output(Module(), keras.layers.DepthwiseConv2D(3), None) is None
