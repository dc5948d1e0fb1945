"""Run one tiny Stage II search epoch under MirroredStrategy on two logical CPU devices.

Executed in a subprocess by test_stage2_distributed.py (logical devices must be configured
before TensorFlow initialises, which the test process has already done)."""

import json
import sys

import iac_tf  # noqa: F401
from iac_tf._keras import keras, tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from iac_tf.training.stage2 import Stage2Config, search  # noqa: E402
from tests.tiny import batched, disc_data, tiny_unet  # noqa: E402

out = sys.argv[1]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
x, y = disc_data(16, size=16, seed=3)
with strategy.scope():
    unet = tiny_unet(size=16, levels=1)
frozen = [w.copy() for w in unet.get_weights()]
cfg = Stage2Config(epochs=1, warmup_epochs=0, batch_size=4, cell_channels=4, partial_channels=2,
                   verbose=0, draw_genotypes=False)
result = search(unet, lambda e, s: batched(x[:8], y[:8]), lambda e, s: batched(x[8:], y[8:]),
                cfg, out, strategy=strategy)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "history": result.history,
    "frozen_unchanged": all(bool((a == b).all()) for a, b in zip(frozen, unet.get_weights())),
}))
