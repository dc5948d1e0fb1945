"""The suite's one set of tiny things (CPU-fast): U-Nets, toy data and a tiny experiment config
over the tiny nnU-Net dataset of :mod:`tests.data.fixtures`."""

from __future__ import annotations

import pathlib

import numpy as np
import yaml

from iac_tf._keras import keras, tf


def tiny_unet(size: int = 32, channels: int = 1, classes: int = 1, f: int = 8, levels: int = 2,
              activation: str = "sigmoid", separate: bool = False) -> keras.Model:
    """A functional U-Net with ``levels`` skips, each a Concatenate([up, skip]) like the zoo's.
    ``activation="softmax"``: a softmax over background + ``classes`` (``classes + 1``
    outputs, channel 0 the background), as nnU-Net and MONAI train; ``separate``: the output
    function as its own ``Activation`` layer after a linear head."""
    x = x_in = keras.Input((size, size, channels), name="image")
    skips = []
    for i in range(levels):
        x = keras.layers.Conv2D(f * 2**i, 3, padding="same", name=f"enc{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"enc{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"enc{i}_relu")(x)
        skips.append(x)
        x = keras.layers.MaxPool2D(name=f"pool{i}")(x)
    x = keras.layers.Conv2D(f * 2**levels, 3, padding="same", activation="relu", name="bottleneck")(x)
    for stage, skip in enumerate(reversed(skips)):
        up = keras.layers.UpSampling2D(name=f"decoder_stage{stage}_upsampling")(x)
        x = keras.layers.Concatenate(name=f"decoder_stage{stage}_concat")([up, skip])
        x = keras.layers.Conv2D(skip.shape[-1], 3, padding="same", activation="relu",
                                name=f"decoder_stage{stage}_conv")(x)
    outputs = classes + (activation == "softmax")
    out = keras.layers.Conv2D(outputs, 1, activation=None if separate else activation,
                              dtype="float32", name="head")(x)
    if separate:
        out = keras.layers.Activation(activation, dtype="float32", name=activation)(out)
    return keras.Model(x_in, out, name="tiny_unet")


def disc_data(n: int = 16, size: int = 32, channels: int = 1, classes: int = 1, seed: int = 0):
    """Noisy bright discs (image) and their masks: a learnable toy segmentation task."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, channels), np.float32)
    masks = np.zeros((n, size, size, classes), np.float32)
    for i in range(n):
        for c in range(classes):
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
            r = rng.integers(size // 8, size // 4)
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
            masks[i, :, :, c] = disc
            images[i, :, :, c % channels] += disc * (1.0 + c)
    images += rng.normal(0, 0.3, images.shape).astype(np.float32)
    return images, masks


def batched(images, masks, batch_size: int = 4) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch_size)


def flexible_unet(keras):
    """A 2-class tiny U-Net with a (None, None, 1) input, like the zoo's U-Nets."""
    x = x_in = keras.Input((None, None, 1), name="image")
    skips = []
    for i in range(2):
        x = keras.layers.Conv2D(4 * 2**i, 3, padding="same", activation="relu", name=f"enc{i}")(x)
        skips.append(x)
        x = keras.layers.MaxPool2D(name=f"pool{i}")(x)
    for stage, skip in enumerate(reversed(skips)):
        up = keras.layers.UpSampling2D(name=f"decoder_stage{stage}_upsampling")(x)
        x = keras.layers.Concatenate(name=f"decoder_stage{stage}_concat")([up, skip])
        x = keras.layers.Conv2D(skip.shape[-1], 3, padding="same", activation="relu",
                                name=f"decoder_stage{stage}_conv")(x)
    out = keras.layers.Conv2D(2, 1, activation="sigmoid", name="head")(x)
    return keras.Model(x_in, out)


def write_config(folder: pathlib.Path, dataset: pathlib.Path, cache: pathlib.Path, **extra):
    cfg = {
        "name": "t", "output_dir": str(folder / "runs"), "seed": 0,
        "data": {"format": "nnunet", "root": str(dataset), "cache_dir": str(cache),
                 "patch_size": 32, "empty_slice_fraction": 1.0},
        "unet": {"backbone": "base", "options": {"base_filters": 4}},
        "stage1": {"epochs": 1, "batch_size": 8, "verbose": 0},
        "stage2": {"epochs": 1, "warmup_epochs": 0, "batch_size": 8, "cell_channels": 4,
                   "verbose": 0},
        "stage3": {"epochs": 1, "batch_size": 8, "cell_channels": 4, "verbose": 0},
    }
    for dotted, value in extra.items():
        node = cfg
        *keys, last = dotted.split("__")
        for k in keys:
            node = node.setdefault(k, {})
        node[last] = value
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
