"""Stage III (Algorithm 3): discrete IAC implanted in a frozen U-Net, trained, saved, exported."""

import numpy as np

from iac_tf._keras import keras
from iac_tf.genotype import Genotype
from iac_tf.training.stage3 import Stage3Config, build_iac_unet, train_iac_unet
from tests.tiny import batched, disc_data, tiny_unet

GENOTYPE = Genotype.from_dict({
    "format": "iac_tf.genotype", "version": 1,
    "edges": [[["sep_conv_3x3", 0], ["skip_connect", 1]],
              [["dil_conv_3x3", 1], ["max_pool_3x3", 2]],
              [["avg_pool_3x3", 0], ["sep_conv_5x5", 3]],
              [["dil_conv_5x5", 2], ["skip_connect", 4]]],
})


def test_build_iac_unet_keeps_shapes_and_freezes_the_unet():
    keras.utils.set_random_seed(0)
    unet = tiny_unet(size=16, levels=2)
    model = build_iac_unet(unet, GENOTYPE, cell_channels=4)
    cells = [layer for layer in model.layers if layer.name.startswith("iac_cell")]
    assert sorted(c.name for c in cells) == ["iac_cell_level0", "iac_cell_level1"]
    trainable = {v.ref() for v in model.trainable_variables}
    assert all(w.ref() not in trainable for w in unet.weights)
    assert all(v.ref() in trainable for c in cells for v in c.trainable_variables)
    x = np.zeros((2, 16, 16, 1), np.float32)
    assert model.predict(x, verbose=0).shape == (2, 16, 16, 1)


def test_train_iac_unet_trains_cells_only_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = disc_data(12, size=16, seed=1)
    unet = tiny_unet(size=16, levels=1)
    frozen = [w.copy() for w in unet.get_weights()]
    cfg = Stage3Config(epochs=2, batch_size=4, learning_rate=1e-2, cell_channels=4, verbose=0)
    result = train_iac_unet(unet, GENOTYPE, batched(x, y), batched(x[:4], y[:4]), cfg, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, unet.get_weights()))
    assert result.best_model_path.is_file() and 0 <= result.best_epoch <= 2  # epoch 0 counts
    import iac_tf.genotype.discrete_cell  # noqa: F401  (registers DiscreteCell)

    best = keras.models.load_model(result.best_model_path, compile=False)
    exported = keras.models.load_model(tmp_path / "savedmodel", compile=False)
    np.testing.assert_allclose(exported.predict(x[:2], verbose=0), best.predict(x[:2], verbose=0),
                               rtol=1e-5, atol=1e-6)
