"""implant on every U-Net of the zoo: all skips found, identity implant bit-identical, and the
residual implant mode (a DiscreteCell per skip) bit-identical at initialisation."""

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
    x = batch(model, n=1)
    skips, new = assert_identity_implant(model, x)
    assert len(skips) == len(concats) >= 4
    assert [s.concat_name for s in skips] == [f"decoder_stage{i}_concat" for i in range(len(skips))]
    assert all(s.up_index == 0 for s in skips)
    assert new.trainable_weights == []
    # residual mode: the same U-Net with a DiscreteCell in every skip, bit-identical
    from tests.implant.helpers import assert_residual_identity, cell_module

    residual = assert_residual_identity(model, cell_module, x=x)
    assert len([layer for layer in residual.layers if layer.name.startswith("residual_level")]) == len(skips)


def test_zoo_has_eight_backbones():
    assert len(BACKBONES) == 8
