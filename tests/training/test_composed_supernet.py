"""Stage II's cells absorbing U-Net layers: ``fuse_output_conv`` (each cell's output 1x1
convolution composed with the frozen convolution after it) and ``fuse_upsampling`` (each cell
takes the tensor before the nearest upsampling of its ``up`` input) compute the same supernet,
the same gradients and the same search step as the cells without them.

Covers: iac_tf/implant/graph.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant import ComposedConv
from iac_tf.training.precision import precision_policy
from iac_tf.training.stage2 import Stage2Config, build_supernet
from tests.tiny import tiny_unet

SIZE = 16


def _pair(mixed=(False, False), **overrides):
    """Two supernets of one U-Net, composed and separate, with the same cell weights;
    ``mixed``: build each under mixed_float16."""
    supernets = []
    for fuse, mixed_precision in zip((True, False), mixed):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        with precision_policy(mixed_precision):
            unet = tiny_unet(size=SIZE, f=8, levels=2)
            cfg = Stage2Config(cell_steps=2, cell_channels=4, partial_channels=2, fuse_output_conv=fuse,
                               fuse_upsampling=fuse, mixed_precision=mixed_precision, **overrides)
            supernets.append(build_supernet(unet, cfg))
    composed, separate = supernets
    by_name = {v.name: v for v in separate.weights}
    for v in composed.weights:
        by_name[v.name].assign(v)  # a name missing on one side fails here
    return composed, separate


def _data(seed):
    rng = np.random.default_rng(seed)
    x = rng.random((2, SIZE, SIZE, 1), np.float32)
    y = (rng.random((2, SIZE, SIZE, 1)) > 0.5).astype(np.float32)
    return x, y


def _composed_layers(model):
    return [layer for layer in model.net.layers if isinstance(layer, ComposedConv)]


def test_every_cell_is_composed_with_its_decoder_convolution():
    composed, separate = _pair()
    layers = _composed_layers(composed)
    assert [(c.inner.name, c.outer.name) for c in layers] == [
        ("output_conv", "decoder_stage0_conv"), ("output_conv", "decoder_stage1_conv")]
    assert not _composed_layers(separate)
    # the frozen convolution is no longer called on its own
    names = {layer.name for layer in composed.net.layers}
    assert "decoder_stage0_conv" not in names and "decoder_stage0_conv" in {
        layer.name for layer in separate.net.layers}
    # same trainable variables (omega), each once
    assert sorted(v.name for v in composed.omega_variables) == sorted(v.name for v in separate.omega_variables)
    assert len({v.ref() for v in composed.omega_variables}) == len(composed.omega_variables)


def _outputs_and_gradients(sn, training, scale=1.0):
    x, y = _data(0)
    with tf.GradientTape() as tape:
        pred = tf.cast(sn(x, training=training), tf.float32)
        loss = tf.reduce_mean(tf.square(pred - y)) * scale  # scale: as LossScaleOptimizer does
    variables = sn.arch_variables + sorted(sn.omega_variables, key=lambda v: v.name)
    return pred.numpy(), [g.numpy() / scale for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("training", [True, False])
def test_same_outputs_and_gradients_for_alpha_beta_omega(training):
    composed, separate = _pair()
    pred_c, grads_c = _outputs_and_gradients(composed, training)
    pred_s, grads_s = _outputs_and_gradients(separate, training)
    np.testing.assert_allclose(pred_c, pred_s, rtol=1e-5, atol=1e-5)
    assert len(grads_c) == len(grads_s)
    for g_c, g_s in zip(grads_c, grads_s):  # to 1e-5 of the tensor's largest entry
        np.testing.assert_allclose(g_c, g_s, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(g_s).max()))


@pytest.mark.parametrize("training", [True, False])
def test_mixed_float16_as_close_to_float32_as_without_absorbing(training):
    """Under mixed_float16 the absorbing supernet computes the float32 function to float16
    accuracy: output within 2^-8 (relative norm), and each gradient group (alpha, beta, all
    omega) no further from float32 than the separate supernet's in float16 (2x + 2^-10).
    Measured (this seed): training mode, absorbing / separate, alpha 0.080 / 0.086, beta 0.159 /
    0.149, omega 0.092 / 0.095; inference mode 0.010 / 0.009, 0.017 / 0.017, 0.015 / 0.016. The
    tiny supernet's batch-statistics BNs on 2 x 16 x 16 pixels cost float16 gradients most of
    their digits in both (the fused cell's test explains the cancellation)."""
    distances = []
    for mixed in ((True, False), (False, True)):  # absorbing in float16, then separate
        composed, separate = _pair(mixed=mixed)
        low, truth = (composed, separate) if mixed[0] else (separate, composed)
        pred16, grads16 = _outputs_and_gradients(low, training, scale=2.0**8)
        pred32, grads32 = _outputs_and_gradients(truth, training)
        assert np.all(np.isfinite(pred16)) and all(np.all(np.isfinite(g)) for g in grads16)
        groups = [([pred16], [pred32]), (grads16[:1], grads32[:1]), (grads16[1:2], grads32[1:2]),
                  (grads16[2:], grads32[2:])]
        distances.append([_relative_distance(a, b) for a, b in groups])
    absorbing, separate = distances
    assert absorbing[0] < 2.0**-8, absorbing
    for name, a, b in zip(("alpha", "beta", "omega"), absorbing[1:], separate[1:]):
        assert a <= 2 * b + 2.0**-10, (name, a, b)


def _relative_distance(values, truth):
    values, truth = [np.concatenate([t.ravel() for t in x]) for x in (values, truth)]
    return float(np.linalg.norm(values - truth) / np.linalg.norm(truth))


def test_same_search_step():
    composed, separate = _pair(lr_schedule="constant", weight_learning_rate=0.1)
    batches = (_data(1), _data(2))
    for sn in (composed, separate):
        sn.search_active = True
        sn.train_step(batches)
    for v_c, v_s in zip(sorted(composed.trainable_variables, key=lambda v: v.name),
                        sorted(separate.trainable_variables, key=lambda v: v.name)):
        assert v_c.name == v_s.name
        np.testing.assert_allclose(v_c.numpy(), v_s.numpy(), rtol=1e-5, atol=1e-6)


def test_cells_take_the_tensor_before_a_nearest_upsampling():
    composed, separate = _pair()
    cells = [layer for layer in composed.net.layers if layer.name.startswith("iac_search_cell_level")
             and not isinstance(layer, ComposedConv)]
    assert [c.input0_upsampling for c in cells] == [(2, 2), (2, 2)]
    names = {layer.name for layer in composed.net.layers}
    assert "decoder_stage0_upsampling" not in names
    assert "decoder_stage0_upsampling" in {layer.name for layer in separate.net.layers}


def test_bilinear_upsampling_is_not_absorbed():
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, f=8, levels=1)
    x = keras.Input((SIZE, SIZE, 1))
    layers = {layer.name: layer for layer in unet.layers}
    # the same U-Net with a bilinear upsampling (ReLU does not commute with interpolation)
    h = x
    for name in ("enc0_conv", "enc0_bn", "enc0_relu"):
        h = layers[name](h)
    skip = h
    h = layers["bottleneck"](layers["pool0"](h))
    up = keras.layers.UpSampling2D(interpolation="bilinear", name="decoder_stage0_upsampling")(h)
    h = keras.layers.Concatenate(name="decoder_stage0_concat")([up, skip])
    out = layers["head"](layers["decoder_stage0_conv"](h))
    supernet = build_supernet(keras.Model(x, out), Stage2Config(cell_steps=2, cell_channels=4,
                                                               partial_channels=2))
    cells = [layer for layer in supernet.net.layers if hasattr(layer, "input0_upsampling")]
    assert [c.input0_upsampling for c in cells] == [None]
    assert "decoder_stage0_upsampling" in {layer.name for layer in supernet.net.layers}


def test_residual_mode_absorbs_nothing():
    composed, _ = _pair(implant_mode="residual")
    assert not _composed_layers(composed)
    cells = [layer for layer in composed.net.layers if hasattr(layer, "input0_upsampling")]
    assert cells and all(c.input0_upsampling is None for c in cells)


def test_only_a_tensor_with_one_reader_can_be_absorbed():
    """``implant`` offers a module the layer after it only where that layer alone reads the
    module's output, as its only input."""
    from iac_tf.implant.graph import build_graph
    from iac_tf.implant.rebuild import sole_consumers

    x = x_in = keras.Input((8, 8, 2))
    cat = keras.layers.Concatenate(name="cat")([keras.layers.Conv2D(2, 1, name="up")(x), x])
    a = keras.layers.Conv2D(3, 3, padding="same", name="a")(cat)
    b = keras.layers.Conv2D(3, 1, name="b")(cat)
    add = keras.layers.Add(name="add")([a, b])
    graph = build_graph(keras.Model(x_in, add))
    readers = {call.layer.name: call for call in graph.calls}
    sole = {key: call.layer.name for key, call in sole_consumers(graph).items()}
    assert readers["cat"].output_keys[0] not in sole  # read by a and b
    assert readers["add"].output_keys[0] not in sole  # a model output
    assert readers["up"].output_keys[0] not in sole  # cat reads it beside x
    assert readers["a"].output_keys[0] not in sole  # add reads a and b together

    unet_graph = build_graph(tiny_unet(size=SIZE, f=8, levels=2))
    cats = [call for call in unet_graph.calls if call.layer.name.endswith("_concat")]
    sole = sole_consumers(unet_graph)
    assert [sole[c.output_keys[0]].layer.name for c in cats] == ["decoder_stage0_conv", "decoder_stage1_conv"]
