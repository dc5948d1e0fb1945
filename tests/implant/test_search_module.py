"""Stage II's module (:mod:`iac_tf.implant.search_module`): every search cell of the supernet
reads the one set of architecture parameters, and the cell's output convolution is composed
with the decoder convolution after it unless that is switched off."""

import numpy as np

from iac_tf._keras import keras, tf
from iac_tf.implant import ComposedConv, implant
from iac_tf.implant.search_module import SearchModule
from iac_tf.search import ArchitectureParameters, SearchCell, num_edges
from tests.tiny import tiny_unet


def _supernet(fuse_output_conv=True):
    keras.utils.set_random_seed(0)
    arch = ArchitectureParameters(num_edges=num_edges(2), init="normal", seed=3, name="arch")

    def make_module(level, up_shape, skip_shape):
        cell = SearchCell(out_channels=up_shape[-1] + skip_shape[-1], C=4, K=2, steps=2,
                          name=f"search_cell{level}")
        return SearchModule(arch, cell, fuse_output_conv=fuse_output_conv)

    return implant(tiny_unet(size=16, f=4), make_module), arch


def test_every_cell_reads_the_one_alpha_and_beta():
    model, arch = _supernet()
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32)
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(y)
    assert y.shape == (2, 16, 16, 1)
    assert [layer.name for layer in model.layers if isinstance(layer, ArchitectureParameters)] == ["arch"]
    grads = tape.gradient(loss, [arch.alpha, arch.beta])
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    cells = [layer for layer in model.layers if isinstance(layer, SearchCell)]
    assert [c.input0_upsampling for c in cells] == [(2, 2), (2, 2)]  # the upsampling taken in


def test_the_output_convolution_is_composed_unless_switched_off():
    model, _ = _supernet()
    composed = [layer.name for layer in model.layers if isinstance(layer, ComposedConv)]
    assert composed == ["search_cell0_composed", "search_cell1_composed"]
    assert "decoder_stage0_conv" not in {layer.name for layer in model.layers}
    plain, _ = _supernet(fuse_output_conv=False)
    assert not [layer for layer in plain.layers if isinstance(layer, ComposedConv)]
    assert "decoder_stage0_conv" in {layer.name for layer in plain.layers}
