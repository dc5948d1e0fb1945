"""Freeze a trained U-Net: no weight of it changes in Stages II and III.

Keras 2 semantics used here (and tested): a `BatchNormalization` layer with ``trainable=False``
runs in inference mode (moving mean/variance used, not updated) even when the model is called with
``training=True``. `implant` additionally calls every original layer with ``training=False``, so
the frozen U-Net is one fixed function (Dropout off too) whatever the trainer does.

A frozen layer's variables are still ``tf.Variable(trainable=True)``, and a gradient tape
watches every such variable it sees read, so Keras' own ``train_step`` would record the frozen
encoder's operations and trace their gradients (filter and input gradients of every encoder
convolution, none of them used). `train_only_trainable` gives an implanted model a step whose tape
watches only the model's trainable variables: the encoder, which reads none of them, is then not
recorded at all, and the frozen decoder only for the input gradients the cells need.
"""

from __future__ import annotations

from typing import Any

from iac_tf._keras import keras, tf


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


def train_only_trainable(model: Any) -> Any:
    """Give ``model`` (changed in place, returned) Keras' ``train_step`` with a gradient tape that
    watches only ``model.trainable_variables`` (module docstring): the same update, no gradient
    work for frozen layers that read no trainable tensor."""
    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = model.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            y_pred = model(x, training=True)
            loss = model.compute_loss(x, y, y_pred, sample_weight)
        model._validate_target_and_loss(y, loss)
        model.optimizer.minimize(loss, variables, tape=tape)
        return model.compute_metrics(x, y, y_pred, sample_weight)

    model.train_step = train_step
    return model
