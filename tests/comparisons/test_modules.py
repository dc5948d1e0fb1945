"""Comparison modules: forward pass against NumPy re-computations of the papers' formulas,
shapes and channel order, get_config and save -> load round trips.

Covers: iac_tf/comparisons/attention.py, iac_tf/comparisons/nested.py
Covers: iac_tf/comparisons/residual_attention.py, iac_tf/comparisons/registry.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.comparisons import METHODS, AttentionAugmentation, AttentionGate, NestedSkip
from iac_tf.comparisons.registry import build_comparison_unet
from tests.comparisons import reference as ref
from tests.tiny import tiny_unet

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape).astype("float32")


def _randomise(layer):
    """Random weights everywhere (BN moving variance kept positive)."""
    for w in layer.weights:
        value = RNG.standard_normal(w.shape) * 0.5
        if "moving_variance" in w.name:
            value = np.abs(value) + 0.5
        w.assign(value.astype("float32"))


def _bn(bn):
    return [bn.gamma.numpy(), bn.beta.numpy(), bn.moving_mean.numpy(), bn.moving_variance.numpy()]


def test_attention_gate_matches_eq_1_2():
    up, skip = _x(2, 4, 4, 3), _x(2, 4, 4, 6)
    gate = AttentionGate(inter_channels=5)
    gate([up, skip])
    _randomise(gate)
    got = gate([up, skip]).numpy()
    want = ref.attention_gate(up.astype(np.float64), skip.astype(np.float64), gate.W_x.kernel.numpy(),
                              gate.W_g.kernel.numpy(), gate.W_g.bias.numpy(), gate.psi.kernel.numpy(),
                              gate.psi.bias.numpy())
    assert got.shape == (2, 4, 4, 9)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert gate.W_x.bias is None and gate.psi.kernel.shape == (1, 1, 5, 1)
    alpha = gate.attention_coefficients(up, skip).numpy()
    assert alpha.shape == (2, 4, 4, 1) and np.all((alpha > 0) & (alpha < 1))


def test_attention_gate_default_inter_channels_and_skip_first_order():
    up, skip = _x(1, 4, 4, 3), _x(1, 4, 4, 6)
    gate = AttentionGate(up_index=1)
    out = gate([up, skip]).numpy()
    assert gate.W_x.filters == 3  # C_skip // 2
    np.testing.assert_array_equal(out[..., 6:], up)  # [skip, up]: up passes through unchanged


def test_attention_augmentation_matches_raunet_aam():
    up, skip = _x(3, 4, 4, 5), _x(3, 4, 4, 2)
    aam = AttentionAugmentation()
    aam([up, skip])
    _randomise(aam)
    got = aam([up, skip], training=False).numpy()

    def params(block):
        return [block[0].kernel.numpy(), block[0].bias.numpy()] + _bn(block[1])

    want = ref.attention_augmentation(up.astype(np.float64), skip.astype(np.float64), params(aam.high),
                                      params(aam.low), (aam.attention.kernel.numpy(), aam.attention.bias.numpy()),
                                      params(aam.transform))
    assert got.shape == (3, 4, 4, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[..., 5:], skip)
    a = aam.attention_weights(up, skip, training=False).numpy()
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, rtol=1e-6)  # softmax over channels


def test_nested_skip_matches_unetpp_node():
    up, skip, below = _x(2, 4, 4, 3), _x(2, 4, 4, 2), _x(2, 2, 2, 6)
    node = NestedSkip()
    node([up, skip, below])
    _randomise(node)
    got = node([up, skip, below], training=False).numpy()
    convs = [[conv.kernel.numpy(), conv.bias.numpy()] + _bn(bn) for conv, bn in zip(node.H[::2], node.H[1::2])]
    want = ref.nested_skip(up.astype(np.float64), skip.astype(np.float64), below.astype(np.float64), convs)
    assert got.shape == (2, 4, 4, 5) and len(convs) == 2
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[..., :3], up)
    # without a deeper skip, the node sees the decoder's up-sampled feature
    two = NestedSkip(num_convs=1)([up, skip])
    assert two.shape == (2, 4, 4, 5)


@pytest.mark.parametrize("bad", [dict(up_index=2), dict(num_convs=0)])
def test_nested_bad_arguments(bad):
    with pytest.raises(ValueError):
        NestedSkip(**bad)


LAYERS = [
    (AttentionGate, dict(inter_channels=3, up_index=1), 2),
    (AttentionAugmentation, dict(up_index=1), 2),
    (NestedSkip, dict(num_convs=1, up_index=0), 3),
]


@pytest.mark.parametrize("cls,kwargs,n_inputs", LAYERS, ids=lambda v: getattr(v, "__name__", ""))
def test_get_config_and_save_load_round_trip(cls, kwargs, n_inputs, tmp_path):
    shapes = [(8, 8, 3), (8, 8, 4), (4, 4, 6)][:n_inputs]
    inputs = [keras.Input(s) for s in shapes]
    layer = cls(name="module", **kwargs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(layer(inputs)))
    _randomise(layer)
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert clone.get_config() == config
    xs = [_x(2, *s) for s in shapes]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert isinstance(loaded.get_layer("module"), cls)
    np.testing.assert_array_equal(loaded(xs, training=False).numpy(), model(xs, training=False).numpy())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_implanted_tiny_unet_saves_and_loads(method, tmp_path):
    unet = tiny_unet(size=16, f=4)
    model = build_comparison_unet(unet, method)
    names = sorted(layer.name for layer in model.layers if layer.name.startswith(method + "_level"))
    assert names == [f"{method}_level0", f"{method}_level1"]
    if method == "nested":  # level 1 sees level 0's (deeper) skip
        node = model.get_layer("nested_level1")
        assert len(node.input) == 3 and node.input[2].shape[1] == 8  # enc1, 8x8
    x = _x(2, 16, 16, 1)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_unknown_method():
    from iac_tf.comparisons import make_module_factory

    with pytest.raises(ValueError, match="unknown comparison method"):
        make_module_factory("transformer", [])
