"""Stage II with ``fuse_output_conv``: each cell's output 1x1 convolution composed with the frozen
convolution after it computes the same supernet, the same gradients and the same search step."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant import ComposedConv
from iac_tf.training.stage2 import Stage2Config, build_supernet
from tests.training.tiny import tiny_unet

SIZE = 16


def _pair(**overrides):
    """Two supernets of one U-Net, composed and separate, with the same cell weights."""
    supernets = []
    for fuse in (True, False):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        unet = tiny_unet(size=SIZE, f=8, levels=2)
        cfg = Stage2Config(cell_steps=2, cell_channels=4, partial_channels=2, fuse_output_conv=fuse,
                           **overrides)
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


@pytest.mark.parametrize("training", [True, False])
def test_same_outputs_and_gradients_for_alpha_beta_omega(training):
    composed, separate = _pair()
    x, y = _data(0)
    grads = []
    for sn in (composed, separate):
        with tf.GradientTape() as tape:
            pred = sn(x, training=training)
            loss = tf.reduce_mean(tf.square(pred - y))
        variables = sn.arch_variables + sorted(sn.omega_variables, key=lambda v: v.name)
        grads.append((pred.numpy(), tape.gradient(loss, variables)))
    (pred_c, grads_c), (pred_s, grads_s) = grads
    np.testing.assert_allclose(pred_c, pred_s, rtol=1e-5, atol=1e-6)
    assert len(grads_c) == len(grads_s)
    for g_c, g_s in zip(grads_c, grads_s):
        np.testing.assert_allclose(g_c.numpy(), g_s.numpy(), rtol=1e-4, atol=1e-6)


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


def test_residual_mode_is_not_composed():
    composed, _ = _pair(implant_mode="residual")
    assert not _composed_layers(composed)


def test_only_a_tensor_with_one_reader_can_be_absorbed():
    """``implant`` offers a module the layer after it only where that layer alone reads the
    module's output, as its only input."""
    from iac_tf.implant.graph import build_graph
    from iac_tf.implant.rebuild import _sole_consumers

    x = x_in = keras.Input((8, 8, 2))
    cat = keras.layers.Concatenate(name="cat")([keras.layers.Conv2D(2, 1, name="up")(x), x])
    a = keras.layers.Conv2D(3, 3, padding="same", name="a")(cat)
    b = keras.layers.Conv2D(3, 1, name="b")(cat)
    add = keras.layers.Add(name="add")([a, b])
    graph = build_graph(keras.Model(x_in, add))
    readers = {call.layer.name: call for call in graph.calls}
    sole = {key: call.layer.name for key, call in _sole_consumers(graph).items()}
    assert readers["cat"].output_keys[0] not in sole  # read by a and b
    assert readers["add"].output_keys[0] not in sole  # a model output
    assert readers["up"].output_keys[0] not in sole  # cat reads it beside x
    assert readers["a"].output_keys[0] not in sole  # add reads a and b together

    unet_graph = build_graph(tiny_unet(size=SIZE, f=8, levels=2))
    cats = [call for call in unet_graph.calls if call.layer.name.endswith("_concat")]
    sole = _sole_consumers(unet_graph)
    assert [sole[c.output_keys[0]].layer.name for c in cats] == ["decoder_stage0_conv", "decoder_stage1_conv"]
