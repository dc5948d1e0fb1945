"""Sliding windows: every pixel covered, large and small slices, equal to a whole-slice model."""

import numpy as np
import pytest

from iac_tf.inference.tiling import predict_slices, window_starts


@pytest.mark.parametrize("length, patch", [(32, 32), (33, 32), (300, 64), (260, 64), (100, 48)])
def test_windows_cover_without_gaps(length, patch):
    starts = window_starts(length, patch)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s: s + patch] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == length - patch
    assert all(b - a <= patch // 2 for a, b in zip(starts, starts[1:]))


def pointwise(batch):
    """A 'model' that is a per-pixel function: tiling must reproduce it exactly."""
    return np.stack([1 / (1 + np.exp(-batch[..., 0])), np.tanh(batch[..., 1]) ** 2], axis=-1)


@pytest.mark.parametrize("shape", [(2, 300, 260, 2), (1, 20, 70, 2)])
def test_predict_slices_equals_the_pointwise_function(shape):
    rng = np.random.default_rng(1)
    slices = rng.normal(size=shape).astype(np.float32)
    calls = []
    out = predict_slices(lambda b: calls.append(b.shape) or pointwise(b), slices, 64,
                         fill=[0.0, 0.0], num_classes=2, batch_size=8)
    assert out.shape == shape[:3] + (2,)
    np.testing.assert_allclose(out, pointwise(slices), rtol=1e-5, atol=1e-6)
    assert all(s[1:] == (64, 64, 2) and s[0] <= 8 for s in calls)
