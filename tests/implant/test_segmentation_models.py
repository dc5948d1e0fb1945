"""implant on segmentation_models U-Nets (vgg16, resnet50): skips, identity, deep graph walk."""

import inspect
import sys

import pytest

from iac_tf._keras import import_segmentation_models
from iac_tf.implant import find_skip_connections
from tests.implant.helpers import assert_identity_implant, batch

# backbone -> expected (skip_name, skip_shape) per level, input 64x64
EXPECTED = {
    "vgg16": [
        ("block5_conv3", (4, 4, 512)),
        ("block4_conv3", (8, 8, 512)),
        ("block3_conv3", (16, 16, 256)),
        ("block2_conv2", (32, 32, 128)),
    ],
    "resnet50": [
        ("stage4_unit1_relu1", (4, 4, 1024)),
        ("stage3_unit1_relu1", (8, 8, 512)),
        ("stage2_unit1_relu1", (16, 16, 256)),
        ("relu0", (32, 32, 64)),
    ],
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def sm_unet(request):
    sm = import_segmentation_models()
    model = sm.Unet(
        request.param,
        input_shape=(64, 64, 3),
        classes=2,
        activation="sigmoid",
        encoder_weights=None,
    )
    return request.param, model


def test_skips_match_decoder_stages(sm_unet):
    backbone, model = sm_unet
    skips = find_skip_connections(model)
    assert [(s.skip_name, s.skip_shape) for s in skips] == EXPECTED[backbone]
    assert [s.concat_name for s in skips] == [f"decoder_stage{i}_concat" for i in range(4)]
    assert [s.up_name for s in skips] == [f"decoder_stage{i}_upsampling" for i in range(4)]
    assert all(s.up_index == 0 for s in skips)
    assert all(s.out_shape[-1] == s.up_shape[-1] + s.skip_shape[-1] for s in skips)


def test_walk_needs_no_recursion_headroom(sm_unet):
    _, model = sm_unet
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        skips = find_skip_connections(model)
    finally:
        sys.setrecursionlimit(limit)
    assert len(skips) == 4


def test_identity_implant_is_bit_identical(sm_unet):
    _, model = sm_unet
    skips, new = assert_identity_implant(model, batch(model))
    assert len(skips) == 4 and new.trainable_weights == []
