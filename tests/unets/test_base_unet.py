"""The plain U-Net encoder (the paper's "base" backbone, :mod:`iac_tf.unets.base_unet`): five
levels of two Conv-BN-ReLU blocks with max-pooling between them, filters doubling from
``base_filters``, layer names as documented, parameter count against a hand count."""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.unets.base_unet import DEPTH, plain_unet_encoder


def test_levels_filters_names_and_parameters():
    encoder = plain_unet_encoder((32, 32, 2), base_filters=2)
    assert DEPTH == 5 and encoder.output_shape == (None, 2, 2, 32)  # stride 16, 2 * 2**4 filters
    names = [layer.name for layer in encoder.layers]
    assert [n for n in names if n.endswith("_pool")] == [f"encoder_block{k}_pool" for k in range(4)]
    for k in range(DEPTH):
        conv = encoder.get_layer(f"encoder_block{k}_conv2")
        assert conv.filters == 2 * 2**k and conv.kernel_size == (3, 3) and not conv.use_bias
        assert encoder.get_layer(f"encoder_block{k}_relu2").output_shape[1] == 32 // 2**k
    # hand count: 3x3 kernels without bias + BatchNorm's 4 vectors per convolution
    channels = [2] + [f for k in range(DEPTH) for f in (2 * 2**k, 2 * 2**k)]
    expected = sum(9 * c_in * c_out + 4 * c_out for c_in, c_out in zip(channels, channels[1:]))
    assert encoder.count_params() == expected


def test_without_batchnorm_the_convolutions_have_biases():
    encoder = plain_unet_encoder((16, 16, 1), base_filters=1, use_batchnorm=False)
    assert not [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.use_bias for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D))
    x = np.ones((1, 16, 16, 1), np.float32)
    assert encoder.predict(x, verbose=0).shape == (1, 1, 1, 16)


def test_refusals():
    with pytest.raises(ValueError, match="no pretrained encoder weights"):
        plain_unet_encoder((32, 32, 1), weights="imagenet")
    with pytest.raises(ValueError, match="base_filters must be a positive integer, got 0"):
        plain_unet_encoder((32, 32, 1), base_filters=0)
