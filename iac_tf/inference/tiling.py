"""Sliding-window prediction over 2D slices of any in-plane size (nothing is cut away).

A model trained on ``P x P`` crops is applied to a ``H x W`` slice by tiling it with ``P x P``
windows that overlap by ``overlap`` (0.5: half a window, as nnU-Net). Slices smaller than
``P`` are padded (centred) with the fill value of training (the clip floor of each channel,
normalised). The probabilities of overlapping windows are averaged with equal weights (our
choice; nnU-Net weights them with a Gaussian). Every voxel is covered by at least one window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from iac_tf._keras import tf

Predictor = Callable[[np.ndarray], np.ndarray]


def window_starts(length: int, patch: int, overlap: float = 0.5) -> list[int]:
    """Starts of ``patch``-long windows covering ``[0, length)`` (``length >= patch``), evenly
    spaced with a step of at most ``patch * (1 - overlap)``; the first is 0, the last
    ``length - patch``."""
    if length < patch:
        raise ValueError(f"length {length} < patch {patch}: pad first")
    if length == patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = math.ceil((length - patch) / step) + 1
    return sorted({int(round(s)) for s in np.linspace(0, length - patch, n)})


def keras_predictor(model) -> Predictor:
    """A fast ``batch -> probabilities`` function of a Keras model (one traced graph)."""
    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda batch: np.asarray(fn(tf.constant(batch, tf.float32)), np.float32)


def predict_slices(predict: Predictor, slices: np.ndarray, patch: int, fill: Sequence[float],
                   num_classes: int, batch_size: int = 32, overlap: float = 0.5) -> np.ndarray:
    """Probabilities ``(S, H, W, N)`` of normalised slices ``(S, H, W, C)``, by sliding
    ``patch x patch`` windows (batches of ``batch_size`` windows)."""
    s_count, height, width, channels = slices.shape
    pad_h, pad_w = max(0, patch - height), max(0, patch - width)
    if pad_h or pad_w:
        padded = np.empty((s_count, height + pad_h, width + pad_w, channels), np.float32)
        padded[...] = np.asarray(fill, np.float32)
        padded[:, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width] = slices
    else:
        padded = slices.astype(np.float32, copy=False)
    ys = window_starts(padded.shape[1], patch, overlap)
    xs = window_starts(padded.shape[2], patch, overlap)
    total = np.zeros(padded.shape[:3] + (num_classes,), np.float32)
    count = np.zeros((1,) + padded.shape[1:3] + (1,), np.float32)
    for y in ys:
        for x in xs:
            count[:, y: y + patch, x: x + patch] += 1.0
    windows = [(s, y, x) for s in range(s_count) for y in ys for x in xs]
    for i in range(0, len(windows), batch_size):
        chunk = windows[i: i + batch_size]
        batch = np.stack([padded[s, y: y + patch, x: x + patch] for s, y, x in chunk])
        probs = predict(batch)
        if probs.shape[-1] != num_classes:
            raise ValueError(f"model returned {probs.shape[-1]} channels, expected {num_classes}")
        for (s, y, x), p in zip(chunk, probs):
            total[s, y: y + patch, x: x + patch] += p
    probs = total / count
    return probs[:, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]
