"""build_unet arguments and errors, mixed precision, and the equivalence with sm.Unet.

Covers: iac_tf/unets/registry.py
"""

import numpy as np
import pytest

from iac_tf._keras import import_segmentation_models, keras
from iac_tf.unets import BACKBONES, build_unet, get_backbone, skip_layer_names
from iac_tf.unets.registry import _SM_FEATURES


def test_backbones_are_the_papers_eight():
    assert BACKBONES == (
        "base",
        "vgg16",
        "resnet50",
        "mobilenetv3_large",
        "efficientnetv2_s",
        "efficientnetv2_m",
        "convnext_tiny",
        "convnext_base",
    )


def test_unknown_backbone_lists_the_backbones():
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'") as info:
        build_unet("resnet18")
    assert all(name in str(info.value) for name in BACKBONES)
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone(None)


@pytest.mark.parametrize(
    "backbone, shape, divisor",
    [
        ("resnet50", (100, 128, 1), 32),
        ("convnext_tiny", (144, 144, 1), 32),
        ("base", (120, 120, 1), 16),
    ],
)
def test_input_sides_must_be_divisible_by_the_reduction(backbone, shape, divisor):
    with pytest.raises(ValueError, match=f"divisible by {divisor}"):
        build_unet(backbone, input_shape=shape)


@pytest.mark.parametrize("shape", [(128, 128), (None, 128, 1), (128, 128, 0)])
def test_input_shape_must_be_concrete_hwc(shape):
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        build_unet("base", input_shape=shape)


def test_classes_must_be_positive():
    with pytest.raises(ValueError, match="classes"):
        build_unet("base", input_shape=(32, 32, 1), classes=0)


def test_unknown_kwargs_name_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown keyword.*'foo'.*accepted: none"):
        build_unet("vgg16", foo=1)
    with pytest.raises(ValueError, match="accepted: alpha, minimalistic"):
        build_unet("mobilenetv3_large", base_filters=8)


def test_base_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained"):
        build_unet("base", input_shape=(32, 32, 1), encoder_weights="imagenet")


def test_decoder_filters_need_one_entry_per_stage():
    with pytest.raises(ValueError, match="needs 4 decoder_filters"):
        build_unet(
            "base",
            input_shape=(32, 32, 1),
            base_filters=4,
            decoder_filters=(8, 8, 8, 8, 8),
        )


def test_base_options_and_custom_decoder():
    model = build_unet(
        "base",
        input_shape=(64, 96, 2),
        classes=2,
        base_filters=4,
        decoder_filters=(5, 6, 7, 8),
        name="tiny",
    )
    assert model.name == "tiny" and model.output_shape == (None, 64, 96, 2)
    assert model.get_layer("encoder_block4_conv2").filters == 64  # 4 * 2**4
    assert [model.get_layer(f"decoder_stage{i}b_conv").filters for i in range(4)] == [
        5,
        6,
        7,
        8,
    ]
    concat = model.get_layer("decoder_stage3_concat")
    assert concat.output_shape == (
        None,
        64,
        96,
        7 + 4,
    )  # [up from stage 2, stride-1 skip]
    no_bn = build_unet(
        "base", input_shape=(32, 32, 1), base_filters=4, use_batchnorm=False
    )
    assert not any(
        layer.name.startswith("encoder_block") and "_bn" in layer.name
        for layer in no_bn.layers
    )


def test_skip_layer_names_ignores_other_models():
    inputs = keras.layers.Input((8, 8, 2))
    outputs = keras.layers.Concatenate(name="decoder_stage0_concatX")([inputs, inputs])
    assert skip_layer_names(keras.Model(inputs, outputs)) == []


def test_mixed_float16_keeps_a_float32_head():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_unet("mobilenetv3_large", input_shape=(64, 64, 4), classes=3)
        base = build_unet("base", input_shape=(32, 32, 1), base_filters=4)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    for m in (model, base):
        concat = m.get_layer("decoder_stage0_concat")
        assert concat.compute_dtype == "float16"  # the body runs in float16 ...
        assert (
            m.get_layer("final_conv").compute_dtype == "float32"
        )  # ... the head does not
        y = m(np.ones((1,) + m.input_shape[1:], "float32"))
        assert y.dtype == "float32" and m.output.dtype == "float32"


@pytest.fixture(scope="module")
def sm_module():
    return import_segmentation_models()


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50"])
def test_feature_layers_are_segmentation_models(sm_module, backbone):
    assert _SM_FEATURES[backbone] == sm_module.Backbones.get_feature_layers(
        backbone, n=4
    )


def test_resnet50_is_layer_for_layer_sm_unet(sm_module):
    """The zoo's decoder reproduces sm.Unet: same layers, names and weights -> same output."""
    shape = (64, 64, 4)
    ours = build_unet("resnet50", input_shape=shape, classes=2)
    keras.backend.clear_session()
    theirs = sm_module.Unet(
        "resnet50",
        input_shape=shape,
        classes=2,
        activation="sigmoid",
        encoder_weights=None,
    )
    assert [layer.name for layer in ours.layers] == [
        layer.name for layer in theirs.layers
    ]
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(1).standard_normal((1,) + shape).astype("float32")
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=0, atol=1e-6)


def test_savedmodel_round_trip_of_a_small_unet(tmp_path):
    """The SavedModel format too (a tiny plain U-Net: tracing dominates the cost)."""
    model = build_unet("base", input_shape=(32, 32, 2), classes=2, base_filters=4)
    x = np.random.default_rng(2).standard_normal((1, 32, 32, 2)).astype("float32")
    model.save(tmp_path / "saved_unet", save_format="tf")
    loaded = keras.models.load_model(tmp_path / "saved_unet", compile=False)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert skip_layer_names(loaded) == skip_layer_names(model)
