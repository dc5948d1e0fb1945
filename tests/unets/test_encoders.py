"""The encoder builders (:mod:`iac_tf.unets.encoders`): a ``keras.applications`` model without
its classifier and without its ImageNet input scaling (our inputs are z-scored), options passed
through, no channel-count warning for the project's 1-4 channels; segmentation_models' backbones
with their own layer names."""

import warnings

from iac_tf._keras import keras
from iac_tf.unets.encoders import application_encoder, sm_encoder


def test_an_application_encoder_has_no_input_scaling_and_takes_options():
    make = application_encoder("MobileNetV3Small", ("alpha", "minimalistic"))
    assert make.description == "keras.applications.MobileNetV3Small"
    assert make.kwargs == ("alpha", "minimalistic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = make((64, 64, 2), minimalistic=True)
    assert not [w for w in caught if "usually expects 1 or 3 input" in str(w.message)]
    assert encoder.input_shape == (None, 64, 64, 2)
    assert encoder.output_shape[1:3] == (2, 2)  # stride 32, no classifier
    assert not [layer for layer in encoder.layers if isinstance(layer, keras.layers.Rescaling)]
    assert not [layer for layer in encoder.layers if "hard_swish" in layer.name
                or "multiply" in layer.name]  # minimalistic: no hard-swish, no squeeze-excite


def test_a_constructor_without_the_preprocessing_switch():
    encoder = application_encoder("MobileNetV2", ("alpha",))((32, 32, 1), alpha=0.35)
    assert encoder.output_shape[1:3] == (1, 1) and encoder.input_shape == (None, 32, 32, 1)


def test_a_segmentation_models_backbone_keeps_its_layer_names():
    make = sm_encoder("vgg16")
    assert make.description == "segmentation_models vgg16" and make.kwargs == ()
    encoder = make((32, 32, 1))
    names = {layer.name for layer in encoder.layers}
    assert {"block1_conv1", "block4_conv3", "block5_pool"} <= names
    assert encoder.output_shape == (None, 1, 1, 512)
