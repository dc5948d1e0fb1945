"""Cases that need a real GPU (marked ``gpu``; skipped where TensorFlow sees none, see conftest):
mixed-precision training really computing in float16 on the device, and the Stage II search
under MirroredStrategy over every visible GPU."""

import math

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.config.stages import Stage1Config
from iac_tf.training.precision import precision_policy
from iac_tf.training.fit import train_model
from iac_tf.training.stage2 import Stage2Config, search
from tests.tiny import batched, disc_data, tiny_unet

pytestmark = pytest.mark.gpu


def test_stage1_mixed_float16_trains_on_the_gpu(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = disc_data(16)
    with tf.device("/GPU:0"), precision_policy(True):
        model = tiny_unet()
        assert model.get_layer("enc0_conv").compute_dtype == "float16"
        cfg = Stage1Config(epochs=2, batch_size=4, learning_rate=1e-2, verbose=0, mixed_precision=True)
        result = train_model(model, batched(x, y), batched(x[:8], y[:8]), cfg, tmp_path)
    assert all(math.isfinite(float(r["loss"])) for r in result.history)
    assert model.get_layer("enc0_conv").kernel.device.endswith("GPU:0")


def test_search_mirrored_over_all_gpus(tmp_path):
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
    x, y = disc_data(16, size=16, seed=3)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        unet = tiny_unet(size=16, levels=1)
    frozen = [w.copy() for w in unet.get_weights()]
    cfg = Stage2Config(epochs=1, warmup_epochs=0, batch_size=4 * len(gpus), cell_channels=4,
                       partial_channels=2, verbose=0, draw_genotypes=False, distribute="mirrored")
    result = search(unet, lambda e, s: batched(x[:8], y[:8], 4 * len(gpus)),
                    lambda e, s: batched(x[8:], y[8:], 4 * len(gpus)), cfg, tmp_path, strategy=strategy)
    assert strategy.num_replicas_in_sync == len(gpus)
    assert math.isfinite(float(result.history[0]["loss_val_search"]))
    assert all(np.array_equal(a, b) for a, b in zip(frozen, unet.get_weights()))
