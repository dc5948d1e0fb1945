"""Stage III's cells absorbing U-Net layers (``fuse_output_conv``, ``fuse_upsampling``): the IAC
U-Net whose cells take in the nearest upsampling before them and the frozen decoder convolution
after them computes what the IAC U-Net without them computes, in Keras, after a ``.keras``
round trip, as an exported SavedModel and through the prediction path.

No paper equation: the reference is ``build_iac_unet(..., fuse_output_conv=False,
fuse_upsampling=False)``, the uncomposed model (cell, then the U-Net's own upsampling and
convolution), with the same cell weights and random BN statistics.
"""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.config.stages import Stage3Config
from iac_tf.files import save_model
from iac_tf.genotype import DiscreteCell, Genotype
from iac_tf.inference.tiling import keras_predictor
from iac_tf.models import load_unet
from iac_tf.training.stage3 import build_iac_unet, export_savedmodel
from tests.inference.test_export import EDGES
from tests.tiny import tiny_unet

SIZE, CHANNELS, CLASSES = 16, 2, 3


def _cells(model):
    return [layer for layer in model.layers if isinstance(layer, DiscreteCell)]


def _own_weights(cell):
    """The cell's weights by name relative to the cell, without the absorbed layer's (the
    U-Net's own decoder convolution, shared by both models)."""
    absorbed = {v.ref() for v in cell.absorbed.weights} if cell.absorbed is not None else set()
    prefix = cell.name + "/"
    own = {}
    for v in cell.weights:
        if v.ref() in absorbed:
            continue
        assert v.name.startswith(prefix), v.name
        own[v.name[len(prefix):]] = v
    return own


def _randomise(cell, rng):
    for name, v in _own_weights(cell).items():
        last = name.split("/")[-1]
        if last.startswith("gamma"):
            v.assign(rng.uniform(0.7, 1.3, v.shape))
        elif last.startswith("beta") or name.startswith("output_conv/bias"):
            v.assign(rng.normal(0.0, 0.2, v.shape))
        elif last.startswith("moving_mean"):
            v.assign(rng.normal(0.0, 0.3, v.shape))
        elif last.startswith("moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape))


@pytest.fixture(scope="module")
def models():
    """(absorbing, uncomposed): two IAC U-Nets of one U-Net with the same cell weights."""
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=SIZE, channels=CHANNELS, classes=CLASSES, f=4)
    plain = build_iac_unet(unet, Genotype(EDGES), cell_channels=4, fuse_output_conv=False,
                           fuse_upsampling=False)
    absorbing = build_iac_unet(unet, Genotype(EDGES), cell_channels=4)
    rng = np.random.default_rng(1)
    plain_cells = {cell.name: cell for cell in _cells(plain)}
    assert len(plain_cells) == 2
    for cell in _cells(absorbing):
        _randomise(cell, rng)
        own, other = _own_weights(cell), _own_weights(plain_cells[cell.name])
        assert sorted(own) == sorted(other)  # a name missing on one side fails here
        for name, v in own.items():
            other[name].assign(v)
    return absorbing, plain


def _x(seed=2, batch=2):
    return np.random.default_rng(seed).normal(size=(batch, SIZE, SIZE, CHANNELS)).astype(np.float32)


def test_cells_absorb_the_upsampling_and_the_decoder_convolution(models):
    absorbing, plain = models
    cells = _cells(absorbing)
    assert any(c.absorbed is not None and c.input0_upsampling is not None for c in cells)
    assert [(c.absorbed.name, c.input0_upsampling) for c in cells] == [
        ("decoder_stage0_conv", (2, 2)), ("decoder_stage1_conv", (2, 2))]
    assert all(c.absorbed is None and c.input0_upsampling is None for c in _cells(plain))
    names = {layer.name for layer in absorbing.layers}
    assert not names & {"decoder_stage0_conv", "decoder_stage0_upsampling"}
    assert {"decoder_stage0_conv", "decoder_stage0_upsampling"} <= {layer.name for layer in plain.layers}
    # same trainable variables, the U-Net stays frozen
    assert sorted(v.name for v in absorbing.trainable_weights) == sorted(v.name for v in plain.trainable_weights)


def test_same_outputs_in_inference(models):
    absorbing, plain = models
    x = _x()
    got = absorbing(x, training=False).numpy()
    want = plain(x, training=False).numpy()
    assert got.shape == (2, SIZE, SIZE, CLASSES)
    assert want.std() > 1e-2  # not saturated sigmoids
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_saved_loaded_exported_and_predicted_outputs(models, tmp_path):
    absorbing, plain = models
    x = _x(seed=3)
    want = absorbing(x, training=False).numpy()
    keras_path = save_model(absorbing, tmp_path / "iac.keras")
    loaded = load_unet(keras_path)
    assert [(c.absorbed.name, c.input0_upsampling) for c in _cells(loaded)] == [
        ("decoder_stage0_conv", (2, 2)), ("decoder_stage1_conv", (2, 2))]
    assert all(not c.absorbed.trainable for c in _cells(loaded))
    np.testing.assert_allclose(loaded(x, training=False).numpy(), want, rtol=1e-6, atol=1e-6)

    export_dir = export_savedmodel(keras_path, tmp_path / "savedmodel")
    fn = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    assert list(fn.structured_input_signature[1]) == ["image"]  # tiny_unet's input layer
    (served,) = fn(image=tf.constant(x)).values()
    np.testing.assert_allclose(served.numpy(), want, rtol=1e-5, atol=1e-5)

    probs = keras_predictor(loaded)(x)
    assert probs.dtype == np.float32 and probs.shape == (2, SIZE, SIZE, CLASSES)
    np.testing.assert_allclose(probs, keras_predictor(plain)(x), rtol=1e-5, atol=1e-5)


def test_residual_mode_absorbs_nothing():
    keras.utils.set_random_seed(0)
    model = build_iac_unet(tiny_unet(size=SIZE, channels=CHANNELS, classes=CLASSES, f=4), Genotype(EDGES),
                           cell_channels=4, implant_mode="residual")
    cells = [layer for layer in model.submodules if isinstance(layer, DiscreteCell)]
    assert len(cells) == 2
    assert all(c.absorbed is None and c.input0_upsampling is None for c in cells)
    assert {"decoder_stage0_conv", "decoder_stage1_conv"} <= {layer.name for layer in model.layers}


def test_stage3_config_fuse_flags():
    cfg = Stage3Config()
    assert cfg.fuse_output_conv is True and cfg.fuse_upsampling is True
    assert Stage3Config(fuse_output_conv=False).fuse_output_conv is False
    assert Stage3Config(fuse_upsampling=False).fuse_upsampling is False
