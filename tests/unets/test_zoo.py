"""Every backbone of the zoo, 1 and 4 input channels: shapes, sigmoid head, skip concatenations,
parameter counts, freezing, and save -> load equality (one model per family and format).

Each (backbone, channels) U-Net is built once for the whole module (module-scoped fixture);
pytest groups the tests by model so at most one is alive at a time.

Covers: iac_tf/unets/registry.py
"""

import numpy as np
import pytest

from iac_tf._keras import keras
from iac_tf.unets import BACKBONES, build_unet, skip_layer_names

SIZE = 128
CASES = [(backbone, 1, 1) for backbone in BACKBONES] + [(b, 4, 3) for b in BACKBONES]

# Skip channels (encoder tensor of decoder_stage{i}_concat, deepest first) and parameter counts
# of the 128x128x1 -> 1 class U-Nets.
SKIP_CHANNELS = {
    "base": (512, 256, 128, 64),
    "vgg16": (512, 512, 256, 128),
    "resnet50": (1024, 512, 256, 64),
    "mobilenetv3_large": (672, 240, 72, 64),
    "efficientnetv2_s": (960, 256, 48, 24),
    "efficientnetv2_m": (1056, 320, 48, 24),
    "convnext_tiny": (384, 192, 96, 64),
    "convnext_base": (512, 256, 128, 64),
}
PARAMS_1CH_1CLASS = {
    "base": 31_395_969,
    "vgg16": 23_751_121,
    "resnet50": 32_554_836,
    "mobilenetv3_large": 8_274_033,
    "efficientnetv2_s": 27_002_817,
    "efficientnetv2_m": 60_116_757,
    "convnext_tiny": 31_985_585,
    "convnext_base": 92_707_793,
}
# Save -> load once per family and format: loading rebuilds the model from its config, which
# costs as much as building it (a .keras file 2-4x more than .h5), so the CI budget allows a few.
SAVE_FORMATS = {
    ("base", 4, 3): (".keras", ".h5"),
    ("resnet50", 4, 3): (".h5",),
    ("mobilenetv3_large", 1, 1): (".keras",),
    ("efficientnetv2_s", 1, 1): (".h5",),
    ("convnext_tiny", 4, 3): (
        ".keras",
        ".h5",
    ),  # ConvNeXt's LayerScale must be registered
}


def _case_id(case):
    backbone, channels, classes = case
    return f"{backbone}-{channels}ch-{classes}cls"


@pytest.fixture(scope="module", params=CASES, ids=_case_id)
def zoo(request):
    backbone, channels, classes = request.param
    keras.backend.clear_session()
    model = build_unet(backbone, input_shape=(SIZE, SIZE, channels), classes=classes)
    x = (
        np.random.default_rng(0)
        .standard_normal((1, SIZE, SIZE, channels))
        .astype("float32")
    )
    return request.param, model, x, model(x, training=False).numpy()


def test_output_is_sigmoid_of_n_channels(zoo):
    (backbone, channels, classes), model, _, y = zoo
    assert model.input_shape == (None, SIZE, SIZE, channels)
    assert model.output_shape == (None, SIZE, SIZE, classes)
    assert y.shape == (1, SIZE, SIZE, classes) and y.dtype == np.float32
    # untrained deep encoders in inference mode (BN moving stats 0 / 1) may saturate to 0 or 1
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    head = model.layers[-1]
    assert isinstance(head, keras.layers.Activation)
    assert head.activation is keras.activations.sigmoid and head.dtype == "float32"
    assert model.name == f"unet_{backbone}"


def test_skip_concatenations(zoo):
    (backbone, _, _), model, _, _ = zoo
    names = skip_layer_names(model)
    assert names == [f"decoder_stage{i}_concat" for i in range(4)]
    first = (
        2 * SIZE // (16 if backbone == "base" else 32)
    )  # the bottleneck is upsampled first
    for i, name in enumerate(names):
        layer = model.get_layer(name)
        assert isinstance(layer, keras.layers.Concatenate) and layer.axis == -1
        up, skip = layer.input
        side = first * 2**i
        assert tuple(up.shape[1:3]) == tuple(skip.shape[1:3]) == (side, side)
        assert int(skip.shape[-1]) == SKIP_CHANNELS[backbone][i]
        producer = up.node.layer  # the upsampled decoder tensor comes first
        assert isinstance(producer, keras.layers.UpSampling2D)
        assert producer.name == f"decoder_stage{i}_upsampling"
    n_concat = sum(
        isinstance(layer, keras.layers.Concatenate) for layer in model.layers
    )
    assert n_concat == 4


def test_parameter_count(zoo):
    (backbone, channels, classes), model, _, _ = zoo
    if (channels, classes) == (1, 1):
        assert model.count_params() == PARAMS_1CH_1CLASS[backbone]
    else:  # only the first encoder conv and the head depend on C and N
        assert model.count_params() > PARAMS_1CH_1CLASS[backbone]


def test_trainable_false_freezes_everything_including_batchnorm(zoo):
    _, model, _, _ = zoo
    n_weights = len(model.weights)
    assert model.trainable_weights
    model.trainable = False
    try:
        assert model.trainable_weights == []
        assert len(model.non_trainable_weights) == n_weights
        bns = [
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        assert all(not bn.trainable for bn in bns)
    finally:
        model.trainable = True


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("zoo", list(SAVE_FORMATS), ids=_case_id, indirect=True)
def test_save_load_gives_identical_predictions(zoo, tmp_path):
    case, model, x, y = zoo
    for suffix in SAVE_FORMATS[case]:
        path = tmp_path / f"{model.name}{suffix}"
        model.save(path)
        loaded = keras.models.load_model(path, compile=False)
        np.testing.assert_array_equal(
            loaded(x, training=False).numpy(), y, err_msg=suffix
        )
        assert skip_layer_names(loaded) == skip_layer_names(model)
        assert loaded.count_params() == model.count_params()
