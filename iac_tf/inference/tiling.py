"""Sliding-window prediction over 2D slices of any in-plane size (nothing is cut away), as
nnU-Net v2's ``nnUNetPredictor`` by default.

A model trained on ``P x P`` crops is applied to a ``H x W`` slice by tiling it with ``P x P``
windows ``step_size * P`` apart at most (:func:`window_starts`, nnU-Net's
``compute_steps_for_sliding_window``; 0.5 by default). Slices smaller than ``P`` are padded
(centred) with the fill value of training (the clip floor of each channel, normalised). Every
window is predicted as it is and, with test-time augmentation (``tta``, on by default), also
mirrored along each in-plane axis and both (nnU-Net's mirroring for 2D: 4 predictions, flipped
back and averaged). Overlapping windows are blended with nnU-Net's Gaussian importance map
(:func:`gaussian_importance`): each window's probabilities are weighted by it, and each pixel
is divided by the sum of the weights that reached it. Every pixel is covered by at least one
window. nnU-Net averages logits; our models end in their activation, so probabilities are
averaged (docs/decisions.md, "Inference").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from iac_tf._keras import tf
from iac_tf.errors import UserError

Predictor = Callable[[np.ndarray], np.ndarray]

STEP_SIZE = 0.5  # nnU-Net's default tile_step_size
SIGMA_SCALE = 1.0 / 8  # nnU-Net's Gaussian: sigma = patch / 8
BLENDS = ("gaussian", "constant")  # constant: equal weights (this tool before the Gaussian)


def check_step_size(step_size) -> float:
    """``step_size`` as a float in ``(0, 1]`` (the largest step between windows as a fraction of
    the window), else a :class:`~iac_tf.errors.UserError` naming it."""
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float, np.floating)) \
            or not 0.0 < float(step_size) <= 1.0:
        raise UserError(f"step_size must be a number in (0, 1] (the step between windows as a "
                         f"fraction of the window), got {step_size!r}")
    return float(step_size)


def window_starts(length: int, patch: int, step_size: float = STEP_SIZE) -> list[int]:
    """Starts of ``patch``-long windows covering ``[0, length)`` (``length >= patch``), by
    nnU-Net's rule: ``n = ceil((length - patch) / (patch * step_size)) + 1`` windows, evenly
    spaced (rounded) from 0 to ``length - patch``."""
    step_size = check_step_size(step_size)
    if length < patch:
        raise ValueError(f"length {length} < patch {patch}: pad first")
    n = int(np.ceil((length - patch) / (patch * step_size))) + 1
    if n == 1:
        return [0]
    actual = (length - patch) / (n - 1)
    return [int(np.round(actual * i)) for i in range(n)]


def gaussian_importance(patch: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """nnU-Net's importance map of a ``patch`` window (float32, maximum 1): a unit impulse at
    the centre (``patch // 2``) smoothed by a Gaussian of ``sigma = sigma_scale * patch`` per axis
    (``scipy.ndimage.gaussian_filter``, zero outside), divided by its maximum; zeros (beyond the
    filter's 4-sigma reach) are set to the smallest non-zero value so no pixel gets weight 0."""
    patch = tuple(int(p) for p in patch)
    impulse = np.zeros(patch, np.float64)
    impulse[tuple(p // 2 for p in patch)] = 1.0
    gauss = ndimage.gaussian_filter(impulse, [p * sigma_scale for p in patch], 0,
                                    mode="constant", cval=0.0)
    gauss /= gauss.max()
    gauss = gauss.astype(np.float32)
    zero = gauss == 0
    if zero.any():
        gauss[zero] = gauss[~zero].min()
    return gauss


def mirror_axes_combinations(axes: Sequence[int] = (1, 2)) -> list[tuple[int, ...]]:
    """Every non-empty combination of ``axes`` (nnU-Net's ``axes_combinations``): for the two
    in-plane axes of a ``(B, H, W, C)`` batch ``[(1,), (2,), (1, 2)]``."""
    return [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


def predict_mirrored(predict: Predictor, batch: np.ndarray, tta: bool = True) -> np.ndarray:
    """Probabilities of ``batch`` ``(B, H, W, C)``; with ``tta`` the mean over the batch as it is
    and mirrored along H, W and both (each prediction flipped back first)."""
    probs = np.asarray(predict(batch), np.float32)
    if not tta:
        return probs
    total = probs.astype(np.float32, copy=True)
    combinations = mirror_axes_combinations()
    for axes in combinations:
        flipped = np.ascontiguousarray(np.flip(batch, axes))
        total += np.flip(np.asarray(predict(flipped), np.float32), axes)
    return total / np.float32(len(combinations) + 1)


def keras_predictor(model) -> Predictor:
    """A fast ``batch -> probabilities`` function of a Keras model (one traced graph)."""
    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda batch: np.asarray(fn(tf.constant(batch, tf.float32)), np.float32)


def predict_slices(predict: Predictor, slices: np.ndarray, patch: int, fill: Sequence[float],
                   num_classes: int, batch_size: int = 32, step_size: float = STEP_SIZE,
                   tta: bool = True, blend: str = "gaussian") -> np.ndarray:
    """Probabilities ``(S, H, W, N)`` of normalised slices ``(S, H, W, C)``, by sliding
    ``patch x patch`` windows (batches of ``batch_size`` windows; with ``tta`` each batch is
    predicted 4 times); ``blend``: ``"gaussian"`` (nnU-Net) or ``"constant"`` (equal weights)."""
    step_size = check_step_size(step_size)
    if blend not in BLENDS:
        raise UserError(f"blend must be one of {BLENDS}, got {blend!r}")
    s_count, height, width, channels = slices.shape
    pad_h, pad_w = max(0, patch - height), max(0, patch - width)
    if pad_h or pad_w:
        padded = np.empty((s_count, height + pad_h, width + pad_w, channels), np.float32)
        padded[...] = np.asarray(fill, np.float32)
        padded[:, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width] = slices
    else:
        padded = slices.astype(np.float32, copy=False)
    ys = window_starts(padded.shape[1], patch, step_size)
    xs = window_starts(padded.shape[2], patch, step_size)
    weight = (gaussian_importance((patch, patch)) if blend == "gaussian"
              else np.ones((patch, patch), np.float32))[..., None]
    total = np.zeros(padded.shape[:3] + (num_classes,), np.float32)
    weights = np.zeros((1,) + padded.shape[1:3] + (1,), np.float32)
    for y in ys:
        for x in xs:
            weights[:, y: y + patch, x: x + patch] += weight
    windows = [(s, y, x) for s in range(s_count) for y in ys for x in xs]
    for i in range(0, len(windows), batch_size):
        chunk = windows[i: i + batch_size]
        batch = np.stack([padded[s, y: y + patch, x: x + patch] for s, y, x in chunk])
        probs = predict_mirrored(predict, batch, tta)
        if probs.shape[-1] != num_classes:
            raise ValueError(f"model returned {probs.shape[-1]} channels, expected {num_classes}")
        for (s, y, x), p in zip(chunk, probs):
            total[s, y: y + patch, x: x + patch] += p * weight
    probs = total / weights
    return probs[:, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]


def windows_per_slice(height: int, width: int, patch: int, step_size: float = STEP_SIZE) -> int:
    """How many windows cover one ``height x width`` slice (after padding to ``patch``)."""
    return (len(window_starts(max(height, patch), patch, step_size))
            * len(window_starts(max(width, patch), patch, step_size)))

