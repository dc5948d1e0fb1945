"""Shared test doubles for the evaluation tests."""

import numpy as np


class ConstModel:
    """A stand-in model whose prediction is ``value`` everywhere (one class)."""

    def __init__(self, value):
        self.value = value

    def predict(self, x, batch_size=None, verbose=0):
        return np.full(x.shape[:3] + (1,), self.value, np.float32)


def half_masks():
    """Four 4x4 slices whose top half is the class; zero images of the same shape."""
    masks = np.zeros((4, 4, 4, 1), np.float32)
    masks[:, :2] = 1
    return np.zeros_like(masks), masks
