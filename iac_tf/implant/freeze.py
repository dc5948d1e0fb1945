"""Freeze a trained U-Net: no weight of it changes in Stages II and III.

Keras 2 semantics used here (and tested): a `BatchNormalization` layer with ``trainable=False``
runs in inference mode (moving mean/variance used, not updated) even when the model is called with
``training=True``. `implant` additionally calls every original layer with ``training=False``, so
the frozen U-Net is one fixed function (Dropout off too) whatever the trainer does.
"""

from __future__ import annotations

from typing import Any

from iac_tf._keras import keras


def iter_layers(model: Any) -> list:
    """Every layer of ``model``, nested sub-models and their layers included (no recursion)."""
    found, stack, seen = [], list(model.layers), set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return found


def freeze_unet(model: Any) -> Any:
    """Set ``trainable=False`` on ``model`` and every layer in it (BatchNorm included).

    Returns:
        ``model`` itself (changed in place), for chaining.
    """
    model.trainable = False
    for layer in iter_layers(model):
        layer.trainable = False
    return model
