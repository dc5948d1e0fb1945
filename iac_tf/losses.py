"""Soft Dice loss and Dice coefficient over N sigmoid channels (the paper's training objective,
model-selection metric and reported score).

For one sample ``b`` and class channel ``c``, with predictions ``p`` in [0, 1] and binary targets
``g`` summed over the pixels::

    dice[b, c] = (2 * sum(p * g) + eps) / (sum(p) + sum(g) + eps)

The per-(sample, class) values are averaged over classes and the batch.
``DiceLoss = 1 - mean(dice)``.

**Empty masks.** With the smoothing ``eps`` (default 1.0) a channel whose ground truth is empty
scores ``eps / (sum(p) + eps)``: 1 when the prediction is empty too, and falling towards 0 as the
model predicts more foreground there. So empty channels are *counted* (a correct "nothing here"
is a perfect score), which is what the paper's Keras-style Dice does. The reporting helpers in
``iac_tf.evaluation`` can exclude empty channels instead.
"""

from __future__ import annotations


from iac_tf._keras import keras, tf

_REDUCE_AXES = (1, 2)  # spatial axes of (B, H, W, N)


def dice_per_channel(y_true, y_pred, eps: float = 1.0):
    """Soft Dice of each (sample, class): a ``(B, N)`` tensor. Pure TF, float32."""
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    axes = list(range(1, len(y_pred.shape) - 1)) or [1]
    intersection = tf.reduce_sum(y_true * y_pred, axis=axes)
    denominator = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_pred, axis=axes)
    return (2.0 * intersection + eps) / (denominator + eps)


def dice_coefficient(y_true, y_pred, eps: float = 1.0):
    """Mean soft Dice over the batch and the N class channels (a scalar)."""
    return tf.reduce_mean(dice_per_channel(y_true, y_pred, eps))


@keras.utils.register_keras_serializable(package="iac_tf")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss ``1 - dice_coefficient`` over N sigmoid channels.

    Args:
        eps: smoothing term added to numerator and denominator (see module docstring for how it
            scores empty masks).
    """

    def __init__(self, eps: float = 1.0, name: str = "dice_loss", **kwargs):
        kwargs.setdefault("reduction", keras.losses.Reduction.SUM_OVER_BATCH_SIZE)
        super().__init__(name=name, **kwargs)
        self.eps = eps

    def call(self, y_true, y_pred):
        # One value per sample: Keras averages it over the batch (and the replicas).
        return 1.0 - tf.reduce_mean(dice_per_channel(y_true, y_pred, self.eps), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"eps": self.eps})
        return config


@keras.utils.register_keras_serializable(package="iac_tf")
class DiceCoefficient(keras.metrics.Mean):
    """Mean soft Dice over samples and class channels, accumulated over an epoch.

    Args:
        eps: smoothing term, as in :class:`DiceLoss`.
        threshold: if set, predictions are binarised at this value before scoring (hard Dice).
    """

    def __init__(self, eps: float = 1.0, threshold: float | None = None, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.eps = eps
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.cast(y_pred, tf.float32)
        if self.threshold is not None:
            y_pred = tf.cast(y_pred > self.threshold, tf.float32)
        values = tf.reduce_mean(dice_per_channel(y_true, y_pred, self.eps), axis=-1)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"eps": self.eps, "threshold": self.threshold})
        return config


__all__ = [
    "dice_per_channel",
    "dice_coefficient",
    "DiceLoss",
    "DiceCoefficient",
]
