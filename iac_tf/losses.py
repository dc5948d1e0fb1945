"""Soft Dice loss and Dice coefficient over N sigmoid channels (the paper's training objective,
model-selection metric and reported score), and the loss of a softmax U-Net.

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

**The metric and the decision rule.** The loss scores every sigmoid channel on its own (the
paper's training objective). :class:`DiceCoefficient` given the dataset's ``classes`` scores the
soft channels of the label rule instead (:func:`iac_tf.labels.soft_channels_tf`:
for exclusive classes each pixel keeps only its most probable class), so a model that calls a
pixel two exclusive classes is not rewarded for it by the metric that selects the epoch.

**Softmax outputs.** A U-Net with a softmax over background + N classes (nnU-Net, MONAI, most
Keras tutorials) trains with nnU-Net's default loss family (docs/decisions.md, "Softmax
U-Nets"): the soft Dice of the N class channels (eq. (5) over channels 1..N, background left
out) plus the cross-entropy of all N + 1 channels, weighted 1 : 1::

    loss[b] = 1 - mean_c dice[b, c]  +  mean_pixels( -sum_{j=0..N} t_j log clip(p_j, 1e-7, 1 - 1e-7) )

with the target's background channel ``t_0 = 1 - max_c g_c`` derived from the (exclusive)
class masks ``g`` (:func:`with_background`). :func:`training_loss` picks the family for a
:class:`~iac_tf.labels.LabelRule`; :func:`loss_and_dice` is the per-sample pair the
Stage II search uses.
"""

from __future__ import annotations


from iac_tf._keras import keras, tf
from iac_tf import labels as _labels

# Python functions building TF ops (no tensor-dependent control flow): AutoGraph must not
# rewrite them (it mis-converts their pure-Python helpers).
_plain = tf.autograph.experimental.do_not_convert
labels_to_channels_tf = _plain(_labels.labels_to_channels_tf)
probabilities_to_labels_tf = _plain(_labels.probabilities_to_labels_tf)
soft_channels_tf = _plain(_labels.soft_channels_tf)

_REDUCE_AXES = (1, 2)  # spatial axes of (B, H, W, N)
CE_EPS = 1e-7  # Keras' epsilon: probabilities clipped to [eps, 1 - eps] before the log
#: How the console names the loss of each output function.
LOSS_NAMES = {"sigmoid": "Dice", "softmax": "Dice of the classes + cross-entropy"}


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


def with_background(y_true):
    """``(..., N)`` exclusive class masks -> ``(..., N + 1)`` softmax targets, channel 0 the
    background ``1 - max_c g_c`` (a voxel in no class)."""
    y_true = tf.cast(y_true, tf.float32)
    return tf.concat([1.0 - tf.reduce_max(y_true, axis=-1, keepdims=True), y_true], axis=-1)


def loss_and_dice(y_true, y_pred, output: str = "sigmoid", eps: float = 1.0):
    """Per sample ``(loss, soft Dice)``, two ``(B,)`` tensors, of the loss family of ``output``
    (the module docstring): ``sigmoid``: ``1 - dice`` over the N channels and that Dice;
    ``softmax`` (``y_pred`` with N + 1 channels): Dice of the N class channels + cross-entropy
    of all channels, and the class channels' Dice."""
    if output == "sigmoid":
        loss = 1.0 - tf.reduce_mean(dice_per_channel(y_true, y_pred, eps), axis=-1)
        return loss, 1.0 - loss
    if output != "softmax":
        raise ValueError(f"output must be 'sigmoid' or 'softmax', got {output!r}")
    y_pred = tf.cast(y_pred, tf.float32)
    dice = tf.reduce_mean(dice_per_channel(y_true, y_pred[..., 1:], eps), axis=-1)
    target = with_background(y_true)
    log_p = tf.math.log(tf.clip_by_value(y_pred, CE_EPS, 1.0 - CE_EPS))
    axes = list(range(1, len(y_pred.shape) - 1)) or [1]
    ce = tf.reduce_mean(-tf.reduce_sum(target * log_p, axis=-1), axis=axes)
    return 1.0 - dice + ce, dice


@keras.utils.register_keras_serializable(package="iac_tf")
class DiceCELoss(keras.losses.Loss):
    """Soft Dice of the class channels + cross-entropy, for a softmax over background + N
    classes (``y_pred`` ``(B, H, W, N + 1)``, ``y_true`` the ``(B, H, W, N)`` class masks):
    nnU-Net's default loss family, :func:`loss_and_dice` with ``output="softmax"``.

    Args:
        eps: smoothing of the Dice term (as :class:`DiceLoss`).
    """

    def __init__(self, eps: float = 1.0, name: str = "dice_ce_loss", **kwargs):
        kwargs.setdefault("reduction", keras.losses.Reduction.SUM_OVER_BATCH_SIZE)
        super().__init__(name=name, **kwargs)
        self.eps = eps

    def call(self, y_true, y_pred):
        return loss_and_dice(y_true, y_pred, "softmax", self.eps)[0]

    def get_config(self):
        config = super().get_config()
        config.update({"eps": self.eps})
        return config


def training_loss(rule=None, eps: float = 1.0) -> keras.losses.Loss:
    """The loss the output of ``rule`` (a :class:`~iac_tf.labels.LabelRule`) calls
    for: :class:`DiceCELoss` for a softmax, else :class:`DiceLoss` (eq. (5))."""
    if rule is not None and rule.output == "softmax":
        return DiceCELoss(eps=eps)
    return DiceLoss(eps=eps)


@keras.utils.register_keras_serializable(package="iac_tf")
class DiceCoefficient(keras.metrics.Mean):
    """Mean soft Dice over samples and class channels, accumulated over an epoch.

    Args:
        eps: smoothing term, as in :class:`DiceLoss`.
        threshold: if set, predictions are binarised before scoring (hard Dice): each channel
            above ``threshold`` without ``classes``, the channels of the label map with them.
        classes: the label values of each output channel (``LabelRule.classes``); ``None``
            (default): every channel scored on its own (the paper's protocol). Given: the
            channels of the decision rule (:mod:`iac_tf.labels`), soft
            (``soft_channels_tf``) or, with ``threshold``, hard.
        label_mode: the rule's label mode (``None``: from ``classes``).
    """

    def __init__(self, eps: float = 1.0, threshold: float | None = None, name: str = "dice",
                 classes=None, label_mode: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.eps = eps
        self.threshold = threshold
        self.classes = None if classes is None else [[int(v) for v in c] for c in classes]
        self.label_mode = label_mode

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.cast(y_pred, tf.float32)
        if self.classes is None:
            if self.threshold is not None:
                y_pred = tf.cast(y_pred > self.threshold, tf.float32)
        elif self.threshold is not None:
            labels = probabilities_to_labels_tf(y_pred, self.classes, self.label_mode,
                                                self.threshold)
            y_pred = labels_to_channels_tf(labels, self.classes)
        else:
            y_pred = soft_channels_tf(y_pred, self.classes, self.label_mode)
        values = tf.reduce_mean(dice_per_channel(y_true, y_pred, self.eps), axis=-1)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"eps": self.eps, "threshold": self.threshold, "classes": self.classes,
                       "label_mode": self.label_mode})
        return config


def selection_metric(rule=None, eps: float = 1.0, name: str = "soft_dice") -> DiceCoefficient:
    """The soft Dice a training logs and selects its epoch by (``soft_dice`` /
    ``val_soft_dice``) under ``rule`` (a :class:`~iac_tf.labels.LabelRule`): the
    rule's soft channels for ``metric: labels``, every channel alone for ``paper_channels`` or
    without a rule."""
    if rule is None or (rule.metric == "paper_channels" and rule.mode != "softmax"):
        return DiceCoefficient(eps=eps, name=name)
    return DiceCoefficient(eps=eps, name=name, classes=rule.classes, label_mode=rule.mode)


__all__ = [
    "dice_per_channel",
    "dice_coefficient",
    "DiceLoss",
    "DiceCELoss",
    "DiceCoefficient",
    "loss_and_dice",
    "training_loss",
    "with_background",
    "selection_metric",
]
