"""The modules around an IAC cell at a skip connection (:mod:`iac_tf.implant.discrete_module`):
a cell takes in the nearest upsampling before it only where that is allowed and possible, and
Stage III's module lets its cell take over the decoder convolution after it only where the
composition saves work; implanted, the cells are what the model holds."""

import types

import numpy as np

from iac_tf._keras import keras
from iac_tf.genotype import DiscreteCell, Genotype
from iac_tf.implant import implant
from iac_tf.implant.discrete_module import CellModule, DiscreteModule
from tests.tiny import tiny_unet

EDGES = ((("sep_conv_3x3", 1), ("skip_connect", 0)), (("dil_conv_3x3", 2), ("max_pool_3x3", 0)))


def test_a_cell_takes_in_a_nearest_upsampling_only():
    cell = types.SimpleNamespace(input0_upsampling=None, output_conv="conv")
    module = CellModule(cell)
    assert module.output_conv == "conv"
    assert not module.absorb_input(keras.layers.UpSampling2D(2, interpolation="bilinear"))
    assert cell.input0_upsampling is None
    assert module.absorb_input(keras.layers.UpSampling2D((2, 3)))
    assert cell.input0_upsampling == (2, 3)
    off = types.SimpleNamespace(input0_upsampling=None)
    assert not CellModule(off, fuse_upsampling=False).absorb_input(keras.layers.UpSampling2D(2))
    assert off.input0_upsampling is None and CellModule(off).output_conv is None


def test_the_cell_takes_over_the_next_convolution_where_that_saves_work():
    conv = keras.layers.Conv2D(8, 3, padding="same", name="decoder_conv")
    cell = DiscreteCell(Genotype(EDGES), out_channels=16, C=2)  # 4 -> 16 -> 8 channels
    assert DiscreteModule(cell, fuse_output_conv=False).absorb(conv) is None
    assert cell.absorbed is None
    assert DiscreteModule(cell).absorb(keras.layers.MaxPool2D()) is None
    assert DiscreteModule(cell).absorb(conv) is cell and cell.absorbed is conv
    wide = DiscreteCell(Genotype(EDGES), out_channels=2, C=16)  # 32 -> 2 -> 8: composing costs more
    assert DiscreteModule(wide).absorb(conv) is None and wide.absorbed is None


def test_implanted_cells_replace_the_upsampling_and_the_decoder_convolutions():
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=16, f=4)
    cells = []

    def make_module(level, up_shape, skip_shape):
        cells.append(DiscreteCell(Genotype(EDGES), out_channels=up_shape[-1] + skip_shape[-1], C=4,
                                  name=f"cell{level}"))
        return DiscreteModule(cells[-1])

    model = implant(unet, make_module)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32)
    assert model(x).shape == (2, 16, 16, 1)
    assert [(c.input0_upsampling, c.absorbed.name) for c in cells] == [
        ((2, 2), "decoder_stage0_conv"), ((2, 2), "decoder_stage1_conv")]
    names = {layer.name for layer in model.layers}
    assert {"cell0", "cell1"} <= names
    assert not names & {"decoder_stage0_upsampling", "decoder_stage0_conv", "decoder_stage0_concat"}
    assert model.trainable_weights and all(
        any(w is v for c in cells for v in c.trainable_weights) for w in model.trainable_weights)
