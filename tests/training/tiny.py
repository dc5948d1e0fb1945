"""Tiny models and data for the training tests (CPU-fast)."""

from __future__ import annotations

import numpy as np

from iac_tf._keras import keras, tf


def tiny_unet(size: int = 32, channels: int = 1, classes: int = 1, f: int = 8) -> keras.Model:
    """A two-level functional U-Net whose skips are Concatenate([up, skip]) like the zoo's."""
    x_in = keras.Input((size, size, channels), name="image")
    e1 = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name="enc1")(x_in)
    p1 = keras.layers.MaxPool2D(name="pool1")(e1)
    e2 = keras.layers.Conv2D(2 * f, 3, padding="same", name="enc2_conv")(p1)
    e2 = keras.layers.BatchNormalization(name="enc2_bn")(e2)
    e2 = keras.layers.Activation("relu", name="enc2_relu")(e2)
    p2 = keras.layers.MaxPool2D(name="pool2")(e2)
    b = keras.layers.Conv2D(4 * f, 3, padding="same", activation="relu", name="bottleneck")(p2)
    u1 = keras.layers.UpSampling2D(name="decoder_stage0_upsampling")(b)
    c1 = keras.layers.Concatenate(name="decoder_stage0_concat")([u1, e2])
    d1 = keras.layers.Conv2D(2 * f, 3, padding="same", activation="relu", name="dec1")(c1)
    u2 = keras.layers.UpSampling2D(name="decoder_stage1_upsampling")(d1)
    c2 = keras.layers.Concatenate(name="decoder_stage1_concat")([u2, e1])
    d2 = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name="dec2")(c2)
    out = keras.layers.Conv2D(classes, 1, activation="sigmoid", dtype="float32", name="head")(d2)
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
