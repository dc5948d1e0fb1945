"""implant on every U-Net of the zoo: all skips found, identity implant bit-identical."""

import pytest

from iac_tf.unets import BACKBONES, build_unet  # a broken zoo import fails here, never skips
from tests.implant.helpers import assert_identity_implant, batch

assert len(BACKBONES) == 8, BACKBONES  # the parametrisation below can never be empty


@pytest.mark.parametrize("backbone", BACKBONES)
def test_identity_implant_on_zoo_unet(backbone):
    model = build_unet(backbone, input_shape=(64, 64, 1), classes=2, encoder_weights=None)
    concats = sorted(
        layer.name
        for layer in model.layers
        if layer.name.startswith("decoder_stage") and layer.name.endswith("_concat")
    )
    skips, new = assert_identity_implant(model, batch(model, n=1))
    assert len(skips) == len(concats) >= 4
    assert [s.concat_name for s in skips] == [f"decoder_stage{i}_concat" for i in range(len(skips))]
    assert all(s.up_index == 0 for s in skips)
    assert new.trainable_weights == []


def test_zoo_has_eight_backbones():
    assert len(BACKBONES) == 8
