"""implant on U-Nets saved to disk and reloaded (.h5, .keras, SavedModel via load_model)."""

import numpy as np
import pytest

from iac_tf._keras import import_segmentation_models, keras
from iac_tf.implant import find_skip_connections
from tests.implant import unets
from tests.implant.helpers import assert_identity_implant, batch, outputs_of

FORMATS = {"h5": "unet.h5", "keras": "unet.keras", "savedmodel": "unet_savedmodel"}
MODELS = {
    "plain": unets.plain_unet,
    "resize_skip_up_order": unets.resize_unet,
    "nested_encoder": unets.nested_encoder_unet,
}


def save_and_load(model, tmp_path, fmt):
    path = str(tmp_path / FORMATS[fmt])
    if fmt == "savedmodel":
        model.save(path, save_format="tf")
    else:
        model.save(path)
    keras.backend.clear_session()  # the loaded layers get the names stored in the file
    return keras.models.load_model(path, compile=False)


# SavedModel round trips cost ~10 s each on 2 CPU cores: two models are enough for that format.
CASES = [
    (n, f) for n in sorted(MODELS) for f in sorted(FORMATS) if (n, f) != ("plain", "savedmodel")
]


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_reloaded_unet_implants_bit_identically(tmp_path, name, fmt):
    model = MODELS[name]()
    x = batch(model, n=1)
    expected_skips = find_skip_connections(model)
    expected = outputs_of(model, x)
    loaded = save_and_load(model, tmp_path, fmt)
    skips, new = assert_identity_implant(loaded, x)
    assert skips == expected_skips
    assert np.array_equal(outputs_of(new, x)[0], expected[0])


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_reloaded_segmentation_models_unet(tmp_path):
    """A segmentation_models U-Net with transpose-conv decoder blocks, trained elsewhere."""
    sm = import_segmentation_models()
    model = sm.Unet(
        "resnet18",
        input_shape=(64, 64, 3),
        classes=2,
        activation="sigmoid",
        encoder_weights=None,
        decoder_block_type="transpose",
    )
    x = batch(model)
    expected = outputs_of(model, x)
    loaded = save_and_load(model, tmp_path, "h5")
    skips, new = assert_identity_implant(loaded, x)
    assert [s.concat_name for s in skips] == [f"decoder_stage{i}_concat" for i in range(4)]
    # Conv2DTranspose -> BN -> ReLU -> concat: the module gets the ReLU's output.
    assert [(s.up_name, s.upsampling_name) for s in skips] == [
        (f"decoder_stage{i}a_relu", f"decoder_stage{i}a_transpose") for i in range(4)
    ]
    assert np.array_equal(outputs_of(new, x)[0], expected[0])
