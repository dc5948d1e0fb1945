"""The zoo's one decoder (:mod:`iac_tf.unets.decoder`): one ``Concatenate([up, skip])`` per stage
with a skip and none beyond, segmentation_models' layer names, a float32 head that is a sigmoid
or a softmax over the channels."""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.unets.decoder import CONCAT_NAME, build_decoder, center_block


def _decoder(filters=(8, 4, 2), activation="sigmoid", classes=3):
    bottleneck = keras.Input((2, 2, 16))
    skips = [keras.Input((4, 4, 6)), keras.Input((8, 8, 5))]
    out = build_decoder(bottleneck, skips, filters, classes, activation=activation)
    return keras.Model([bottleneck, *skips], out), skips


def test_stages_concatenations_and_names():
    model, skips = _decoder()
    assert model.output_shape == (None, 16, 16, 3)  # a third stage without a skip
    concats = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert [c.name for c in concats] == [CONCAT_NAME.format(0), CONCAT_NAME.format(1)]
    # [upsampled decoder tensor, encoder tensor]: the skip is the second input
    assert concats[0].input[1] is skips[0] and concats[1].input[1] is skips[1]
    assert concats[0].input[0].node.layer.name == "decoder_stage0_upsampling"
    assert model.get_layer("decoder_stage1b_conv").filters == 4
    assert model.get_layer("final_conv").dtype == "float32"
    assert model.get_layer("sigmoid").dtype == "float32"


def test_a_softmax_head_sums_to_one():
    model, _ = _decoder(activation="softmax")
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(1,) + tuple(i.shape[1:])).astype(np.float32) for i in model.inputs]
    probs = model.predict(inputs, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_fewer_filters_than_skips_is_refused():
    with pytest.raises(ValueError, match="decoder_filters has 1 entries but the encoder has 2 skips"):
        _decoder(filters=(8,))


def test_center_block():
    x = keras.Input((2, 2, 4))
    model = keras.Model(x, center_block(x, 6))
    assert [layer.name for layer in model.layers[1:]] == [
        "center_block1_conv", "center_block1_bn", "center_block1_relu",
        "center_block2_conv", "center_block2_bn", "center_block2_relu"]
    assert model.output_shape == (None, 2, 2, 6)
