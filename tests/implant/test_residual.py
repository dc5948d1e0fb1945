"""The residual implant mode: bit-identical to the U-Net at initialisation (both concatenation
orders, both projections; every zoo backbone: tests/implant/test_zoo.py), zero gradient into the module at init, and a
save -> load round trip."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant import ResidualImplant, find_skip_connections, implant, residual
from iac_tf.genotype import DiscreteCell
from tests.implant.helpers import assert_residual_identity, batch, cell_module, conv_module, outputs_of
from tests.implant.unets import plain_unet, resize_unet

@pytest.mark.parametrize("build", [plain_unet, resize_unet], ids=["up_skip", "skip_up"])
@pytest.mark.parametrize("projection", ["auto", "conv"])
def test_residual_both_concat_orders_and_projections(build, projection):
    keras.utils.set_random_seed(1)
    model = build()
    make = conv_module if projection == "auto" else cell_module  # auto on a closure -> W_out conv
    new = assert_residual_identity(model, make, projection)
    adds = [layer for layer in new.layers if isinstance(layer, ResidualImplant)]
    assert all(a.projection for a in adds)


def test_replace_mode_is_not_identical():
    keras.utils.set_random_seed(0)
    model = plain_unet()
    x = batch(model)
    new = implant(model, cell_module)
    assert not np.array_equal(outputs_of(new, x)[0], outputs_of(model, x)[0])


def test_output_conv_projection_needs_an_output_conv():
    with pytest.raises(ValueError, match="output_conv"):
        implant(plain_unet(), residual(conv_module, find_skip_connections(plain_unet()),
                                       "output_conv"))


def test_gradient_reaches_only_w_out_at_init():
    """With W_out = 0 the module's weights get exactly zero gradient; W_out does not."""
    keras.utils.set_random_seed(2)
    model = plain_unet()
    x = batch(model, n=2)
    new = implant(model, residual(cell_module, find_skip_connections(model)))
    cells = [layer for layer in new.layers if isinstance(layer, DiscreteCell)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(new(x, training=True) - 1.0))
    variables = new.trainable_variables
    grads = dict(zip([v.ref() for v in variables], tape.gradient(loss, variables)))
    out_refs = {v.ref() for c in cells for v in c.output_conv.trainable_variables}
    inner = [g for r, g in grads.items() if r not in out_refs]
    outer = [g for r, g in grads.items() if r in out_refs]
    assert inner and all(g is None or not np.any(g.numpy()) for g in inner)
    assert any(np.any(g.numpy()) for g in outer)


def test_residual_model_save_load_round_trip(tmp_path):
    keras.utils.set_random_seed(3)
    model = plain_unet()
    x = batch(model, n=2)
    new = implant(model, residual(cell_module, find_skip_connections(model), "conv"))
    # move W_out away from zero so the round trip checks real weights
    for layer in new.layers:
        if isinstance(layer, ResidualImplant):
            layer.w_out.kernel.assign(tf.random.normal(layer.w_out.kernel.shape, stddev=0.1))
    path = tmp_path / "residual.keras"
    new.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(outputs_of(loaded, x)[0], outputs_of(new, x)[0])
    assert ResidualImplant(up_first=False, projection=False).get_config()["up_first"] is False
