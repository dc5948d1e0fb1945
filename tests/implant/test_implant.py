"""implant on hand-written U-Nets: identity, frozen U-Net, BatchNorm statistics, errors, names.

Covers: iac_tf/implant/freeze.py, iac_tf/implant/modules.py, iac_tf/implant/rebuild.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.implant import (
    ImplantError,
    NoSkipConnectionsError,
    find_skip_connections,
    freeze_unet,
    implant,
    module_name,
)
from tests.implant import unets
from tests.implant.helpers import assert_identity_implant, batch, conv_module, outputs_of

L = keras.layers

BUILDERS = {
    "plain": lambda: unets.plain_unet(),
    "plain_dynamic": lambda: unets.plain_unet(input_shape=(None, None, 3)),
    "resize_skip_up_order": lambda: unets.resize_unet(),
    "resize_dynamic": lambda: unets.resize_unet(input_shape=(None, None, 1)),
    "nested_encoder": lambda: unets.nested_encoder_unet(),
    "wrapped_twice": lambda: unets.wrapped_unet(),
    "shared_layers": lambda: unets.shared_layers_unet(),
    "tf_concat": lambda: unets.tf_concat_unet(),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_identity_module_leaves_output_bit_identical(name):
    model = BUILDERS[name]()
    skips, new = assert_identity_implant(model, batch(model, n=2))
    assert new.name == f"{model.name}_implanted"
    assert len(skips) >= 2


def test_module_gets_up_then_skip_with_shapes():
    seen = []

    def make_module(level, up_shape, skip_shape):
        def module(inputs):
            up, skip = inputs
            seen.append((level, up_shape, skip_shape, tuple(up.shape[1:]), tuple(skip.shape[1:])))
            return L.Concatenate(name=module_name("m", level))([skip, up])

        return module

    implant(unets.resize_unet(), make_module)
    assert seen == [
        (0, (16, 16, 8), (16, 16, 8), (16, 16, 8), (16, 16, 8)),
        (1, (32, 32, 8), (32, 32, 4), (32, 32, 8), (32, 32, 4)),
    ]


def test_original_layers_and_weights_are_reused_and_frozen():
    model = unets.plain_unet()
    new = implant(model, conv_module, name="supernet")
    assert new.name == "supernet"
    assert new.get_layer("enc0_conv") is model.get_layer("enc0_conv")
    assert all(not layer.trainable for layer in model.layers)
    trainable = sorted(w.name for w in new.trainable_weights)
    assert trainable == [
        "iac_level0/bias:0",
        "iac_level0/kernel:0",
        "iac_level1/bias:0",
        "iac_level1/kernel:0",
    ]
    assert [n for n in (layer.name for layer in new.layers) if n.startswith(("iac_", "cat_"))] == [
        "cat_level0",
        "iac_level0",
        "cat_level1",
        "iac_level1",
    ]


def test_fit_step_changes_modules_only_and_keeps_batchnorm_statistics():
    model = unets.plain_unet()
    # Non-trivial moving statistics, so "unchanged" cannot hold by accident.
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-0.1, 0.1, layer.moving_mean.shape[0]))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1.5))
    before = {w.name: w.numpy().copy() for w in model.weights}
    new = implant(model, conv_module)
    modules_before = [w.numpy().copy() for w in new.trainable_weights]
    x = batch(model, n=2)
    y = np.random.RandomState(1).rand(2, 32, 32, 2).astype("float32")
    new.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    new.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for w in model.weights:
        assert np.array_equal(w.numpy(), before[w.name]), w.name
    assert any("moving_mean" in name for name in before)
    assert all(
        not np.array_equal(a, w.numpy()) for a, w in zip(modules_before, new.trainable_weights)
    )


def test_frozen_unet_runs_in_inference_mode_when_training():
    """BatchNorm and Dropout of the U-Net act as at inference even with training=True."""
    model = unets.plain_unet()
    x = batch(model, n=2)
    expected = outputs_of(model, x, training=False)
    skips = find_skip_connections(model)
    from iac_tf.implant import original_concat

    new = implant(model, original_concat(skips))
    assert np.array_equal(outputs_of(new, x, training=True)[0], expected[0])


def test_explicit_training_arguments_are_overridden():
    """MC-dropout style calls (training=True, even positional) also run in inference mode."""
    inputs = keras.Input((16, 16, 2))
    e = L.Dropout(0.5)(L.Conv2D(4, 3, padding="same")(inputs), True)
    b = L.BatchNormalization()(L.MaxPooling2D()(e), training=True)
    d = L.Concatenate()([L.UpSampling2D()(b), e])
    model = keras.Model(inputs, L.Conv2D(1, 1)(d))
    new = implant(model, conv_module)
    x = batch(model, n=2)
    first = outputs_of(new, x, training=True)[0]
    assert np.array_equal(first, outputs_of(new, x, training=True)[0])
    assert np.array_equal(first, outputs_of(new, x, training=False)[0])


def test_freeze_unet_freezes_nested_layers():
    model = unets.nested_encoder_unet()
    assert freeze_unet(model) is model
    encoder = model.get_layer("encoder")
    assert not any(layer.trainable for layer in encoder.layers + model.layers)
    assert model.trainable_weights == [] and encoder.trainable_weights == []


def test_wrong_module_shape_names_level_and_shapes():
    def make_module(level, up_shape, skip_shape):
        return L.Conv2D(3, 1, name=module_name("bad", level))

    with pytest.raises(ImplantError, match=r"level 0 .*\(16, 16, 3\).*\(16, 16, 16\)"):
        implant(unets.plain_unet(), lambda lv, u, s: lambda t: make_module(lv, u, s)(t[0]))


def test_module_returning_a_list_is_an_error():
    with pytest.raises(ImplantError, match="expected one tensor"):
        implant(unets.plain_unet(), lambda level, up, skip: lambda inputs: list(inputs))


@pytest.mark.parametrize("module_layer_name", ["enc0_conv", "same_for_all_levels"])
def test_taken_module_names_are_rejected(module_layer_name):
    def make_module(level, up_shape, skip_shape):
        return L.Concatenate(name=module_layer_name)

    with pytest.raises(ImplantError, match="already used"):
        implant(unets.plain_unet(), make_module)


def test_no_skip_model_raises_before_freezing():
    model = unets.no_skip_net()
    with pytest.raises(NoSkipConnectionsError):
        implant(model, conv_module)
    assert all(layer.trainable for layer in model.layers)


def test_implanted_model_saves_and_loads(tmp_path):
    model = unets.resize_unet()
    new = implant(model, conv_module)
    x = batch(model)
    path = str(tmp_path / "implanted.keras")
    new.save(path)
    loaded = keras.models.load_model(path)
    assert np.array_equal(outputs_of(loaded, x)[0], outputs_of(new, x)[0])
    assert len(loaded.trainable_weights) == 4
