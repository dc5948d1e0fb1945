"""Train a tiny Stage I U-Net, then a Stage III IAC U-Net on it, each one epoch under
MirroredStrategy on two logical CPU devices, each inside the strategy the pipeline's training
unit gives (``iac_tf.pipeline.units.strategy``), the U-Net loaded in the Stage III one.

Executed in a subprocess by test_distributed.py (logical devices must be configured before
TensorFlow initialises, which the test process has already done)."""

import json
import sys

import iac_tf  # noqa: F401
from iac_tf._keras import keras, tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from iac_tf.config.stages import Stage1Config, Stage3Config  # noqa: E402
from iac_tf.genotype import Genotype  # noqa: E402
from iac_tf.models import load_unet  # noqa: E402
from iac_tf.pipeline import units  # noqa: E402
from iac_tf.training.fit import train_model  # noqa: E402
from iac_tf.training.stage3 import train_iac_unet  # noqa: E402
from tests.tiny import batched, disc_data, tiny_unet  # noqa: E402

out = sys.argv[1]
# MirroredStrategy() uses the visible GPUs; on this CPU machine, the two logical CPUs
_mirrored = tf.distribute.MirroredStrategy
units.tf.distribute.MirroredStrategy = lambda: _mirrored(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
x, y = disc_data(16, size=16, seed=3)
train, val = (lambda e, s: batched(x[:8], y[:8])), (lambda e, s: batched(x[8:], y[8:]))
s1 = Stage1Config(epochs=1, batch_size=4, verbose=0, distribute="mirrored")
with units.strategy(s1.distribute).scope():
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    unet = tiny_unet(size=16, levels=1)
    r1 = train_model(unet, train, val, s1, f"{out}/stage1")
genotype = Genotype(((("sep_conv_3x3", 0), ("skip_connect", 1)), (("max_pool_3x3", 0), ("dil_conv_3x3", 2))))
s3 = Stage3Config(epochs=1, batch_size=4, verbose=0, distribute="mirrored", cell_channels=4,
                  export_savedmodel=False, evaluate_initial=False)
with units.strategy(s3.distribute).scope():  # a new strategy: the U-Net is loaded in its scope
    replicas3 = tf.distribute.get_strategy().num_replicas_in_sync
    unet = load_unet(r1.best_model_path)
    frozen = [w.copy() for w in unet.get_weights()]
    r3 = train_iac_unet(unet, genotype, train, val, s3, f"{out}/stage3")
print(json.dumps({
    "replicas": [replicas, replicas3],
    "stage1_val_soft_dice": r1.best_val_soft_dice, "stage3_val_soft_dice": r3.best_val_soft_dice,
    "frozen_unchanged": all(bool((a == b).all()) for a, b in zip(frozen, unet.get_weights())),
}))
