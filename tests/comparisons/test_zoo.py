"""Every comparison module implants into every zoo U-Net (1 and 4 input channels) and trains a
step, leaving the U-Net's weights and BatchNorm statistics bit-identical.

Cheap by construction: each U-Net is built once (32x32 input, slim decoder) and implanted once,
the three methods taking turns over its skip levels (so every model holds all three modules,
and the nested node still sees the deeper skip); one eager gradient step trains them.

Covers: iac_tf/comparisons/registry.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.comparisons import METHODS, make_module_factory
from iac_tf.comparisons.registry import nested_factory
from iac_tf.implant import find_skip_connections, implant
from iac_tf.unets import BACKBONES, build_unet

SIZE = 32
CASES = [(b, c) for b in BACKBONES for c in (1, 4)]
ORDER = ("nested", "attention", "residual_attention")


def _options(backbone):
    return dict(base_filters=4) if backbone == "base" else dict(decoder_filters=(16, 8, 8, 4, 4))


def mixed_factory(skips, shift):
    """Level ``l`` gets ``ORDER[(l + shift) % 3]``; every level records its skip for nested."""
    seen = {}
    factories = {m: make_module_factory(m, skips) for m in ORDER if m != "nested"}
    factories["nested"] = nested_factory(skips, seen=seen)

    def make_module(level, up_shape, skip_shape):
        module = factories[ORDER[(level + shift) % 3]](level, up_shape, skip_shape)

        def recorded(inputs):
            out = module(inputs)
            seen[level] = inputs[1]
            return out

        return recorded

    return make_module


@pytest.mark.parametrize("backbone,channels", CASES, ids=[f"{b}-{c}ch" for b, c in CASES])
def test_all_methods_train_a_step_in_frozen_zoo_unet(backbone, channels):
    assert set(ORDER) == set(METHODS)
    unet = build_unet(backbone, input_shape=(SIZE, SIZE, channels), classes=2, **_options(backbone))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, SIZE, SIZE, channels)).astype("float32")
    y = (rng.random((2, SIZE, SIZE, 2)) > 0.5).astype("float32")
    before = [w.numpy().copy() for w in unet.weights]
    skips = find_skip_connections(unet)
    model = implant(unet, mixed_factory(skips, shift=channels))
    modules = {m: [layer for layer in model.layers if layer.name.startswith(f"{m}_level")] for m in ORDER}
    assert all(modules.values()), {m: len(v) for m, v in modules.items()}
    nested = [n for n in modules["nested"] if n.name != "nested_level0"]
    assert all(len(n.input) == 3 for n in nested)  # the deeper skip reaches the UNet++ node
    assert model.output_shape == unet.output_shape
    module_weights = {id(w) for ms in modules.values() for m in ms for w in m.trainable_weights}
    assert {id(w) for w in model.trainable_weights} == module_weights
    start = [w.numpy().copy() for w in model.trainable_weights]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
    grads = tape.gradient(loss, model.trainable_weights)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_weights))
    for m, layers in modules.items():
        ws = {id(w) for layer in layers for w in layer.trainable_weights}
        moved = [not np.array_equal(a, w.numpy()) for a, w in zip(start, model.trainable_weights) if id(w) in ws]
        assert any(moved), f"{backbone}: no {m} weight changed"
    after = [w.numpy() for w in unet.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the frozen U-Net changed"
