"""Sliding windows: every pixel covered, nnU-Net's window positions for any step size, the
Gaussian importance map, and mirroring + Gaussian blending against an independent NumPy
reference on a tiny Keras model."""

import math

import numpy as np
import pytest

from iac_tf.errors import UserError
from iac_tf.inference.tiling import (gaussian_importance, keras_predictor, predict_slices,
                                     window_starts)


def nnunet_steps(image_size, tile_size, tile_step_size):
    """nnU-Net v2's ``compute_steps_for_sliding_window`` for one axis, written out again."""
    target_step = tile_size * tile_step_size
    num_steps = int(np.ceil((image_size - tile_size) / target_step)) + 1
    max_step_value = image_size - tile_size
    actual = max_step_value / (num_steps - 1) if num_steps > 1 else 99999999999
    return [int(np.round(actual * i)) for i in range(num_steps)]


STEP_CASES = [(length, patch, step) for length, patch in [(32, 32), (33, 32), (300, 64),
                                                           (260, 64), (100, 48), (110, 64),
                                                           (512, 128), (37, 16)]
              for step in (1.0, 0.7, 0.5, 1 / 3, 0.25, 0.1)]


@pytest.mark.parametrize("length, patch, step", STEP_CASES)
def test_window_starts_are_nnunets_and_cover_without_gaps(length, patch, step):
    starts = window_starts(length, patch, step)
    assert starts == nnunet_steps(length, patch, step)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s: s + patch] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == length - patch
    assert all(0 < b - a <= math.ceil(patch * step) for a, b in zip(starts, starts[1:]))


def test_window_starts_known_values():
    assert window_starts(110, 64, 0.5) == [0, 23, 46]  # nnU-Net's own example
    assert window_starts(512, 128, 0.5) == [0, 64, 128, 192, 256, 320, 384]
    assert window_starts(512, 128, 1.0) == [0, 128, 256, 384]
    assert window_starts(300, 64, 0.25) == [0, 16, 31, 47, 63, 79, 94, 110, 126, 142, 157, 173,
                                            189, 205, 220, 236]


@pytest.mark.parametrize("step", [0, -0.5, 1.5, float("nan"), True, "0.5"])
def test_bad_step_size_is_refused(step):
    with pytest.raises(UserError, match="step_size must be a number in"):
        window_starts(100, 32, step)


def analytic_gaussian(patch, sigma_scale):
    """exp(-d^2 / (2 sigma^2)) per axis around patch // 2, 0 beyond scipy's 4-sigma truncation,
    zeros raised to the smallest non-zero value."""
    axes = []
    for p in patch:
        sigma = p * sigma_scale
        d = np.arange(p) - p // 2
        g = np.exp(-d.astype(np.float64) ** 2 / (2 * sigma ** 2))
        g[np.abs(d) > int(4.0 * sigma + 0.5)] = 0.0
        axes.append(g)
    out = np.multiply.outer(*axes)
    out[out == 0] = out[out > 0].min()
    return out


@pytest.mark.parametrize("patch, scale", [((48, 48), 1 / 8), ((16, 21), 1 / 8),
                                          ((64, 64), 1 / 32)])
def test_gaussian_importance_map(patch, scale):
    got = gaussian_importance(patch, scale)
    want = analytic_gaussian(patch, scale)
    assert got.dtype == np.float32 and got.shape == patch and got.max() == 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert got.min() > 0
    if scale == 1 / 32:  # the truncated corners were clamped to the smallest non-zero value
        assert (got == got.min()).sum() > 100


def pointwise(batch):
    """A 'model' that is a per-pixel function: tiling must reproduce it exactly."""
    return np.stack([1 / (1 + np.exp(-batch[..., 0])), np.tanh(batch[..., 1]) ** 2], axis=-1)


@pytest.mark.parametrize("shape", [(2, 300, 260, 2), (1, 20, 70, 2)])
@pytest.mark.parametrize("tta", [True, False])
def test_predict_slices_equals_the_pointwise_function(shape, tta):
    rng = np.random.default_rng(1)
    slices = rng.normal(size=shape).astype(np.float32)
    calls = []
    out = predict_slices(lambda b: calls.append(b.shape) or pointwise(b), slices, 64,
                         fill=[0.0, 0.0], num_classes=2, batch_size=8, tta=tta)
    assert out.shape == shape[:3] + (2,)
    np.testing.assert_allclose(out, pointwise(slices), rtol=1e-5, atol=1e-6)
    assert all(s[1:] == (64, 64, 2) and s[0] <= 8 for s in calls)
    windows = shape[0] * len(window_starts(max(shape[1], 64), 64)) * len(
        window_starts(max(shape[2], 64), 64))
    assert sum(s[0] for s in calls) == windows * (4 if tta else 1)


PATCH = 16


@pytest.fixture(scope="module")
def conv_model():
    """A tiny Keras model whose output depends on the window (3x3 convolutions, zero padding at
    the window's border) and on the orientation (random kernels): blending and mirroring
    change its result."""
    from iac_tf._keras import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((PATCH, PATCH, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inp)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inp, out)


def reference(model, slices, fill, step, tta, gaussian):
    """Sliding windows written out in float64, window by window: nnU-Net's positions, the
    analytic Gaussian, flips of a single window, padding centred."""
    s_count, h, w, c = slices.shape
    ph, pw = max(0, PATCH - h), max(0, PATCH - w)
    padded = np.empty((s_count, h + ph, w + pw, c))
    padded[...] = fill
    padded[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w] = slices
    weight = analytic_gaussian((PATCH, PATCH), 1 / 8) if gaussian else np.ones((PATCH, PATCH))
    num = np.zeros(padded.shape[:3] + (3,))
    den = np.zeros(padded.shape[:3] + (1,))
    flips = [(), (0,), (1,), (0, 1)] if tta else [()]
    for s in range(s_count):
        for y in nnunet_steps(padded.shape[1], PATCH, step):
            for x in nnunet_steps(padded.shape[2], PATCH, step):
                window = padded[s, y: y + PATCH, x: x + PATCH]
                probs = np.zeros((PATCH, PATCH, 3))
                for axes in flips:
                    flipped = np.flip(window, axes)[None].astype(np.float32)
                    probs += np.flip(np.asarray(model(flipped))[0], axes)
                probs /= len(flips)
                num[s, y: y + PATCH, x: x + PATCH] += probs * weight[..., None]
                den[s, y: y + PATCH, x: x + PATCH] += weight[..., None]
    return (num / den)[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]


@pytest.mark.parametrize("shape, step", [((2, 37, 23, 2), 0.5), ((1, 40, 40, 2), 0.3),
                                         ((1, 12, 30, 2), 0.5)])
def test_mirroring_and_gaussian_blending_equal_the_numpy_reference(conv_model, shape, step):
    rng = np.random.default_rng(2)
    slices = rng.normal(size=shape).astype(np.float32)
    fill = np.array([-1.5, 0.5], np.float32)
    predict = keras_predictor(conv_model)
    results = {}
    for tta in (True, False):
        for blend in ("gaussian", "constant"):
            got = predict_slices(predict, slices, PATCH, fill, 3, batch_size=5, step_size=step,
                                 tta=tta, blend=blend)
            want = reference(conv_model, slices, fill, step, tta, blend == "gaussian")
            assert got.shape == shape[:3] + (3,)
            np.testing.assert_allclose(got, want, atol=2e-6)
            results[tta, blend] = got
    # each option changes the result (so the reference comparison above can fail)
    assert np.abs(results[True, "gaussian"] - results[False, "gaussian"]).max() > 1e-3
    if shape[1] > PATCH:
        assert np.abs(results[True, "gaussian"] - results[True, "constant"]).max() > 1e-4
