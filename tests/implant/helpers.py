"""Shared checks for the implantation tests."""

import numpy as np

from iac_tf._keras import keras
from iac_tf.implant import find_skip_connections, implant, module_name, original_concat, residual

L = keras.layers


def batch(model, n=1, seed=0):
    """A random input batch for every input of ``model`` (None dims -> 32)."""
    rng = np.random.RandomState(seed)
    shapes = [[d or 32 for d in t.shape[1:]] for t in model.inputs]
    arrays = [rng.rand(n, *s).astype("float32") for s in shapes]
    return arrays[0] if len(arrays) == 1 else arrays


def outputs_of(model, x, training=False):
    out = model(x, training=training)
    return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_identity_implant(model, x):
    """Implanting the original concatenations leaves every output bit-identical."""
    expected = outputs_of(model, x)
    skips = find_skip_connections(model)
    new = implant(model, original_concat(skips))
    got = outputs_of(new, x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)
    names = [layer.name for layer in new.layers if layer.name.startswith("concat_level")]
    assert sorted(names) == sorted(module_name("concat", s.level) for s in skips)
    return skips, new


def conv_module(level, up_shape, skip_shape):
    """A trainable module: concatenate, then a 1x1 conv back to the concat's channels."""
    concat = L.Concatenate(name=module_name("cat", level))
    conv = L.Conv2D(up_shape[-1] + skip_shape[-1], 1, name=module_name("iac", level))
    return lambda inputs: conv(concat(inputs))


def _genotype():
    from iac_tf.genotype import Genotype

    return Genotype.from_dict(GENOTYPE_DICT)


GENOTYPE_DICT = {
    "format": "iac_tf.genotype", "version": 1,
    "edges": [[["sep_conv_3x3", 0], ["skip_connect", 1]],
              [["dil_conv_3x3", 1], ["max_pool_3x3", 2]],
              [["avg_pool_3x3", 0], ["sep_conv_5x5", 3]],
              [["dil_conv_5x5", 2], ["skip_connect", 4]]],
}


def cell_module(level, up_shape, skip_shape):
    """A DiscreteCell (C=2) of ``GENOTYPE_DICT`` for the skip at ``level``."""
    from iac_tf.genotype import DiscreteCell

    return DiscreteCell(_genotype(), out_channels=int(up_shape[-1]) + int(skip_shape[-1]), C=2,
                        name=module_name("iac_cell", level))


def assert_residual_identity(model, make_module, projection="auto", x=None):
    """The residual implant of ``make_module`` leaves every output bit-identical at init."""
    x = batch(model) if x is None else x
    expected = outputs_of(model, x)
    new = implant(model, residual(make_module, find_skip_connections(model), projection))
    got = outputs_of(new, x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)
    # not a no-op: the modules are there and trainable
    assert new.trainable_weights
    return new
