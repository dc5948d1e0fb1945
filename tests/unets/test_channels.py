"""3-channel ImageNet-shaped weights -> 1-4 channel encoders."""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.unets import build_unet
from iac_tf.unets.channels import adapt_array


def test_first_conv_kernel_is_rgb_mean_scaled_and_repeated():
    kernel = np.arange(2 * 1 * 3 * 2, dtype="float32").reshape(2, 1, 3, 2)
    one = adapt_array(kernel, (2, 1, 1, 2))
    np.testing.assert_array_equal(
        one[..., 0, :], kernel.sum(axis=2)
    )  # C=1: the RGB sum
    four = adapt_array(kernel, (2, 1, 4, 2))
    assert four.shape == (2, 1, 4, 2)
    for c in range(4):
        np.testing.assert_allclose(four[..., c, :], kernel.mean(axis=2) * 3 / 4)
    # a constant image gives the same response as the gray RGB image
    np.testing.assert_allclose(four.sum(axis=2), kernel.sum(axis=2), rtol=1e-6)


def test_input_vectors_and_other_shapes():
    np.testing.assert_array_equal(
        adapt_array(np.array([1.0, 2.0, 6.0]), (2,)), [3.0, 3.0]
    )
    same = np.ones((3, 3, 8, 4))
    assert adapt_array(same, (3, 3, 8, 4)) is same
    with pytest.raises(ValueError, match="cannot adapt"):
        adapt_array(np.ones((3, 3, 8, 4)), (3, 3, 16, 4))


def test_weights_file_of_the_3_channel_encoder(tmp_path):
    channels = 4
    source = keras.applications.MobileNetV3Large(
        input_shape=(64, 64, 3),
        include_top=False,
        weights=None,
        include_preprocessing=False,
    )
    path = str(tmp_path / "encoder.h5")
    source.save_weights(path)
    model = build_unet(
        "mobilenetv3_large", input_shape=(64, 64, channels), encoder_weights=path
    )
    convs = [layer for layer in source.layers if isinstance(layer, keras.layers.Conv2D)]
    first, last = convs[0], convs[-1]
    names = {layer.name for layer in model.layers}
    ours = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert (
        first.name in names
    )  # auto names restart after clear_session; compare by position
    ours_first = ours[0]
    expected = first.kernel.numpy().mean(axis=2, keepdims=True) * 3 / channels
    np.testing.assert_allclose(
        ours_first.kernel.numpy(), np.repeat(expected, channels, axis=2), rtol=1e-6
    )
    ours_last = ours[len(convs) - 1]
    np.testing.assert_array_equal(ours_last.kernel.numpy(), last.kernel.numpy())
