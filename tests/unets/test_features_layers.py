"""Structural skip locators and the registered ConvNeXt LayerScale.

Covers: iac_tf/unets/features.py, iac_tf/unets/layers.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.unets.features import at_stride, conv_stem, named
from iac_tf.unets.layers import convnext_layer_scale_class, register_application_layers


def _toy_encoder():
    x = inputs = keras.layers.Input((32, 32, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(x)
    x = keras.layers.Conv2D(3, 3, strides=2, padding="same")(x)  # 16x16
    x = keras.layers.ZeroPadding2D(1)(x)  # 18x18, not a stride
    x = keras.layers.Conv2D(4, 3, strides=1)(x)  # 16x16 again: the last 16x16 map
    x = keras.layers.MaxPooling2D()(x)  # 8x8
    return keras.Model(inputs, x)


def test_at_stride_finds_the_last_map_of_that_size_regardless_of_names():
    for _ in range(2):  # auto-generated names differ between the two builds
        encoder = _toy_encoder()
        assert at_stride(2)(encoder).shape[1:] == (16, 16, 4)
        assert at_stride(1)(encoder).shape[1:] == (32, 32, 2)
        assert at_stride(4)(encoder) is encoder.output
    with pytest.raises(ValueError, match="no 2x2 feature map"):
        at_stride(16)(encoder)


def test_named_and_conv_stem():
    encoder = _toy_encoder()
    layer = encoder.layers[1]
    assert named(layer.name)(encoder) is layer.output
    stem = conv_stem(stride=4, filters=6)(encoder)
    assert stem.shape[1:] == (8, 8, 6)
    assert stem.node.layer.name == "stem_s4_relu3"
    with pytest.raises(ValueError, match="power of two"):
        conv_stem(stride=3)


def test_layer_scale_is_registered_and_round_trips():
    registered = register_application_layers()
    cls = convnext_layer_scale_class()
    assert registered == {"iac_tf>LayerScale": cls}
    assert keras.utils.get_registered_name(cls) == "iac_tf>LayerScale"
    layer = cls(init_values=0.5, projection_dim=3, name="ls")
    config = keras.layers.serialize(layer)
    clone = keras.layers.deserialize(config)
    assert type(clone) is cls and clone.get_config() == layer.get_config()
    np.testing.assert_allclose(
        clone(np.ones((1, 3), "float32")).numpy(), [[0.5, 0.5, 0.5]]
    )
