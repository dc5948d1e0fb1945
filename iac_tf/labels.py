"""Per-class probabilities -> one label map: the one decision rule of the tool, per label mode.

The models have one output channel per class ``k`` and class ``k`` is the union of label values
``V_k`` (:class:`iac_tf.data.datasets.Classes`, read from the dataset's registry entry or its
``dataset.json`` with ``data.label_mode``). The label mode follows from the classes
(:func:`label_mode`), so every consumer finds the same one:

* ``exclusive`` (no label value in two classes: ACDC, AMOS, tissue maps, ``label_mode: raw``):
  the class with the highest probability where that probability is above ``threshold`` (0.5),
  background (0) elsewhere; it writes ``paint(k)`` (``min(V_k)``). A voxel above 0.5 in two
  classes gets one label, never both.
* ``regions`` (classes share label values: BraTS WT={1,2,3}, TC={1,3}, ET={3}; KiTS
  kidney+masses={1,2,3}, masses={2,3}, tumor={2}), see docs/decisions.md "Label maps from
  overlapping regions":

  1. a voxel is foreground for class ``k`` when ``p_k > threshold`` (0.5);
  2. among its foreground classes the one with the fewest label values wins (the most specific
     region: ET inside TC inside WT); between equally specific classes the higher probability
     wins (first class on exact ties);
  3. the winner ``k`` writes ``paint(k)``: the smallest value of ``V_k`` that no smaller class
     contained in ``V_k`` claims (WT -> 2, TC -> 1, ET -> 3; kidney -> 1, masses -> 3,
     tumor -> 2); ``min(V_k)`` if they claim all of them;
  4. no foreground class: 0 (background).

  For nested regions this is nnU-Net's region painting (``regions_class_order``: paint the
  regions from largest to smallest).
* ``softmax`` (``N + 1`` outputs, channel 0 the background): the argmax; channel ``k + 1``
  writes ``paint(k)`` (exact ties: the first channel, background before any class). Never
  derived from the classes but from the model: :meth:`LabelRule.for_outputs` gives it to a
  model with ``N + 1`` output channels (a softmax over background + classes, :data:`OUTPUTS`).

:func:`probabilities_to_labels` is the rule; :func:`probabilities_to_labels_tf` its TensorFlow
twin (the exported SavedModel's ``labels`` output), tested equal. Scores follow from the labels:
:class:`LabelRule` turns probabilities into the binary channels a hard Dice compares with the
masks (class ``k`` where the label is in ``V_k``: :func:`labels_to_channels`), or, for the
paper's protocol (``evaluation.metric: paper_channels``), every channel thresholded on its own;
and into the soft channels of the selection metric's soft Dice (:meth:`LabelRule.soft_channels`),
whose hard version is the rule's channels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from iac_tf.errors import UserValueError

THRESHOLD = 0.5  # our choice (the paper states none): where a sigmoid says "more likely than not"

#: How probabilities become labels (:func:`probabilities_to_labels`).
LABEL_MODES = ("exclusive", "regions", "softmax")
#: The output functions a U-Net may end in: one sigmoid per class (``N`` channels) or a softmax
#: over background + classes (``N + 1`` channels, channel 0 the background).
OUTPUTS = ("sigmoid", "softmax")
#: What the hard and soft Dice score (``evaluation.metric``): ``labels``, the channels of the
#: label map of :func:`probabilities_to_labels` (the default), or ``paper_channels``, every
#: output channel thresholded and scored on its own (the paper's protocol, Section IV-B).
METRICS = ("labels", "paper_channels")

Classes = Sequence[Sequence[int]]


def _sets(classes: Classes) -> list[frozenset]:
    return [frozenset(int(v) for v in vals) for vals in classes]


def label_mode(classes: Classes) -> str:
    """``exclusive`` when no label value belongs to two classes, else ``regions``."""
    sets = _sets(classes)
    for i, a in enumerate(sets):
        if any(a & b for b in sets[i + 1:]):
            return "regions"
    return "exclusive"


def _mode(classes: Classes, mode: str | None) -> str:
    if mode is None:
        return label_mode(classes)
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
    if mode == "exclusive" and label_mode(classes) != "exclusive":
        raise ValueError(f"label mode 'exclusive' for classes that share label values: "
                         f"{[list(v) for v in classes]}")
    if mode == "softmax" and label_mode(classes) != "exclusive":
        raise ValueError(f"softmax outputs need classes that exclude each other, got "
                         f"{[list(v) for v in classes]}")
    return mode


def _channels(mode: str, classes: Classes) -> int:
    return len(classes) + (mode == "softmax")


def output_of(channels: int, classes: Classes) -> str:
    """The output function (:data:`OUTPUTS`) of a model with ``channels`` output channels for
    ``classes``: ``sigmoid`` for ``N``, ``softmax`` for ``N + 1`` (background + classes); any
    other count raises ``ValueError`` naming both."""
    n = len(classes)
    if channels == n:
        return "sigmoid"
    if channels == n + 1:
        return "softmax"
    raise ValueError(f"{channels} output channel(s) for {n} class(es): expected {n} (one "
                     f"sigmoid per class) or {n + 1} (a softmax over background + classes)")


def _check_channels(n: int, mode: str, classes: Classes) -> None:
    want = _channels(mode, classes)
    if n != want:
        extra = " (background + classes)" if mode == "softmax" else ""
        raise ValueError(f"{n} probability channels for {len(classes)} classes{extra}; "
                         f"expected {want}")


def paint_values(classes: Classes) -> list[int]:
    """``paint(k)`` of every class (rule 3 of the module docstring)."""
    sets = _sets(classes)
    out = []
    for k, own in enumerate(sets):
        claimed = set()
        for j, other in enumerate(sets):
            if j != k and other < own:  # a strictly smaller region inside this one
                claimed |= other
        free = sorted(own - claimed)
        out.append(free[0] if free else min(own))
    return out


def _sizes(classes: Classes, mode: str) -> np.ndarray:
    """Per class, the weight of rule 2: ``|V_k|`` for regions, 0 (probability alone) else."""
    if mode != "regions":
        return np.zeros(len(classes), np.float32)
    return np.array([len(set(v)) for v in classes], np.float32)


def winner_key(probs: np.ndarray, classes: Classes, threshold: float = THRESHOLD,
               mode: str | None = None) -> np.ndarray:
    """``p_k - 2 |V_k|`` (regions) or ``p_k`` (exclusive) where ``p_k > threshold``, else
    ``-inf``: rules 1-2 (``|V_k|`` steps of 2 dominate any probability difference); the
    argmax over the last axis is the winner."""
    mode = _mode(classes, mode)
    probs = np.asarray(probs, np.float32)
    sizes = _sizes(classes, mode)
    return np.where(probs > threshold, probs - 2.0 * sizes, -np.inf).astype(np.float32)


def _dtype(values) -> type:
    return np.uint8 if max(values, default=0) < 256 else np.int16


def probabilities_to_labels(probs: np.ndarray, classes: Classes, mode: str | None = None,
                            threshold: float = THRESHOLD) -> np.ndarray:
    """Label map ``(...)`` of probabilities ``(..., N)`` (``(..., N + 1)`` for ``softmax``):
    THE decision rule (the module docstring). ``mode`` ``None``: :func:`label_mode` of
    ``classes``."""
    mode = _mode(classes, mode)
    probs = np.asarray(probs)
    _check_channels(probs.shape[-1], mode, classes)
    values = np.asarray(paint_values(classes))
    dtype = _dtype(values)
    if mode == "softmax":
        lut = np.concatenate([[0], values])
        return lut[np.argmax(probs, axis=-1)].astype(dtype)
    key = winner_key(probs, classes, threshold, mode)
    winner = np.argmax(key, axis=-1)
    any_fg = np.isfinite(np.max(key, axis=-1))
    return np.where(any_fg, values[winner], 0).astype(dtype)


def labels_to_channels(labels: np.ndarray, classes: Classes) -> np.ndarray:
    """Binary channels ``(..., N)`` of a label map: class ``k`` where the label is in ``V_k``
    (how the masks are made from the label files; values in no class are background)."""
    labels = np.asarray(labels)
    top = max(max(int(v) for v in vals) for vals in classes)
    lut = np.zeros((top + 1, len(classes)), bool)
    for k, vals in enumerate(classes):
        lut[[int(v) for v in vals], k] = True
    inside = (labels >= 0) & (labels <= top)
    return lut[np.where(inside, labels, 0).astype(np.int64)] & inside[..., None]


def containment(classes: Classes) -> np.ndarray:
    """``M[k, j]``: ``V_j`` lies inside ``V_k`` (every class inside itself)."""
    sets = _sets(classes)
    return np.array([[b <= a for b in sets] for a in sets], bool)


def _soft_form(mode: str, metric: str) -> str:
    """Which soft channels :func:`soft_channels` (and its TensorFlow twin) give: ``classes``
    (a softmax's channels without the background), ``outputs`` (``paper_channels``: the output
    channels as they are), else the soft label rule of ``exclusive`` or nested ``regions``."""
    if mode == "softmax":
        return "classes"
    if metric == "paper_channels":
        return "outputs"
    if metric != "labels":
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return mode


def soft_channels(probs: np.ndarray, classes: Classes, mode: str | None = None,
                  metric: str = "labels") -> np.ndarray:
    """The channels ``(..., N)`` a soft Dice scores, float32.

    ``paper_channels``: the output channels as they are (without the background of
    ``softmax``). ``labels``: a soft form of the label rule whose values above the threshold
    are exactly the rule's channels (:func:`labels_to_channels` of
    :func:`probabilities_to_labels`): ``exclusive``: every voxel keeps only its most probable
    class (``p_k`` if ``k`` is the argmax, else 0); ``regions``: a region is as probable as
    the most probable region inside it (``max_{V_j in V_k} p_j``; the rule's channels for
    nested regions: a voxel painted ET is in TC and WT); ``softmax``: the class channels."""
    mode = _mode(classes, mode)
    probs = np.asarray(probs, np.float32)
    _check_channels(probs.shape[-1], mode, classes)
    form = _soft_form(mode, metric)
    if form == "classes":
        return probs[..., 1:]
    if form == "outputs":
        return probs
    if form == "exclusive":
        winner = np.argmax(probs, axis=-1)
        return np.where(np.arange(len(classes)) == winner[..., None], probs, 0.0
                        ).astype(np.float32)
    inside = containment(classes)
    return np.max(np.where(inside, probs[..., None, :], 0.0), axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """The decision rule of one dataset and what its Dice scores.

    Args:
        classes: the label values of each class (the dataset's ``Classes.values``).
        mode: ``None`` (default): :func:`label_mode` of ``classes``; or one of
            :data:`LABEL_MODES` (``softmax`` for models with a background output).
        metric: ``labels`` (default) or ``paper_channels`` (:data:`METRICS`).
        threshold: the probability a class must exceed (0.5).
    """

    classes: tuple[tuple[int, ...], ...]
    mode: str | None = None
    metric: str = "labels"
    threshold: float = THRESHOLD

    def __post_init__(self):
        classes = tuple(tuple(int(v) for v in vals) for vals in self.classes)
        if not classes or any(not vals for vals in classes):
            raise ValueError(f"every class needs at least one label value, got {self.classes!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "mode", _mode(classes, self.mode))

    @classmethod
    def for_channels(cls, n: int, metric: str = "labels") -> LabelRule:
        """``n`` exclusive classes with label values ``1..n`` (a dataset without label values,
        e.g. ``npz``)."""
        return cls(tuple((k + 1,) for k in range(n)), metric=metric)

    @classmethod
    def for_outputs(cls, classes: Classes, channels: int, metric: str = "labels") -> LabelRule:
        """The rule of a model with ``channels`` output channels (:func:`output_of`): the label
        mode of ``classes`` for ``N`` sigmoids, ``softmax`` for ``N + 1`` (a ``ValueError``
        when the classes are nested regions, which a softmax cannot give)."""
        output = output_of(int(channels), classes)
        return cls(classes, mode="softmax" if output == "softmax" else None, metric=metric)

    @property
    def num_outputs(self) -> int:
        return _channels(self.mode, self.classes)

    @property
    def output(self) -> str:
        """The output function the rule reads (:data:`OUTPUTS`)."""
        return "softmax" if self.mode == "softmax" else "sigmoid"

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """:func:`probabilities_to_labels` (always the label rule, whatever ``metric``)."""
        return probabilities_to_labels(probs, self.classes, self.mode, self.threshold)

    def channels(self, probs: np.ndarray) -> np.ndarray:
        """The binary channels ``(..., N)`` a hard Dice scores: those of :meth:`labels`
        (``labels``) or every class channel above the threshold (``paper_channels``)."""
        if self.metric == "paper_channels":
            probs = np.asarray(probs)
            _check_channels(probs.shape[-1], self.mode, self.classes)
            return (probs[..., 1:] if self.mode == "softmax" else probs) > self.threshold
        return labels_to_channels(self.labels(probs), self.classes)

    def soft_channels(self, probs: np.ndarray) -> np.ndarray:
        """:func:`soft_channels` of ``probs``."""
        return soft_channels(probs, self.classes, self.mode, self.metric)

    def check_masks(self, masks: np.ndarray, where: str = "the masks") -> None:
        """Raise :class:`~iac_tf.errors.UserValueError` (a ``ValueError``) naming ``where`` when
        ``masks`` (``(..., N)`` ground truth) has a voxel in two
        classes although the rule gives each voxel one class (``exclusive``/``softmax``
        with ``labels``): its Dice would be wrong, not just low."""
        if self.metric != "labels" or self.mode == "regions":
            return
        masks = np.asarray(masks)
        if masks.size and float(masks.sum(axis=-1, dtype=np.float32).max()) > 1.5:
            raise UserValueError(
                f"{where}: a voxel belongs to two classes, but the classes "
                f"{[list(v) for v in self.classes]} exclude each other (label mode "
                f"{self.mode}); give the classes' label values (overlapping regions) or score "
                "each channel alone with evaluation.metric: paper_channels")

    def describe(self) -> str:
        """One line naming the rule, for tables and the console."""
        above = f"above {self.threshold:g}"
        if self.metric == "paper_channels":
            return (f"paper_channels: each output channel thresholded {above} and scored on "
                    "its own (the paper's protocol; a voxel may count for two classes)")
        return {
            "exclusive": f"labels: one label per voxel, the most probable class where its "
                         f"probability is {above}, background elsewhere (exclusive classes)",
            "regions": f"labels: one label per voxel, regions {above} painted most specific "
                       "last (nested regions); region k = the label values of k",
            "softmax": "labels: one label per voxel, the argmax of the softmax outputs",
        }[self.mode]

    def record(self) -> dict:
        """The rule as JSON: ``metric``, ``label_mode``, ``threshold``, ``description``."""
        return {"metric": self.metric, "label_mode": self.mode, "threshold": self.threshold,
                "description": self.describe()}


# ------------------------------------------------------------------------------- TensorFlow twins
def probabilities_to_labels_tf(probs, classes: Classes, mode: str | None = None,
                               threshold: float = THRESHOLD):
    """:func:`probabilities_to_labels` in TensorFlow (int32 labels), for the serving signature."""
    from iac_tf._keras import tf  # noqa: PLC0415 - keeps iac_tf.labels TensorFlow-free

    mode = _mode(classes, mode)
    probs = tf.cast(probs, tf.float32)
    if probs.shape[-1] is not None:
        _check_channels(int(probs.shape[-1]), mode, classes)
    values = tf.constant(paint_values(classes), tf.int32)
    if mode == "softmax":
        lut = tf.concat([tf.zeros([1], tf.int32), values], axis=0)
        return tf.gather(lut, tf.argmax(probs, axis=-1, output_type=tf.int32))
    sizes = tf.constant(_sizes(classes, mode), tf.float32)
    key = tf.where(probs > threshold, probs - 2.0 * sizes,
                   tf.fill(tf.shape(probs), tf.constant(-np.inf, tf.float32)))
    winner = tf.argmax(key, axis=-1, output_type=tf.int32)
    any_fg = tf.math.is_finite(tf.reduce_max(key, axis=-1))
    return tf.where(any_fg, tf.gather(values, winner), tf.zeros_like(winner))


def labels_to_channels_tf(labels, classes: Classes):
    """:func:`labels_to_channels` in TensorFlow (float32 0/1 channels)."""
    from iac_tf._keras import tf  # noqa: PLC0415

    top = max(max(int(v) for v in vals) for vals in classes)
    lut = np.zeros((top + 1, len(classes)), np.float32)
    for k, vals in enumerate(classes):
        lut[[int(v) for v in vals], k] = 1.0
    labels = tf.cast(labels, tf.int32)
    inside = tf.logical_and(labels >= 0, labels <= top)
    out = tf.gather(tf.constant(lut), tf.where(inside, labels, tf.zeros_like(labels)))
    return out * tf.cast(inside, tf.float32)[..., None]


def soft_channels_tf(probs, classes: Classes, mode: str | None = None,
                     metric: str = "labels"):
    """:func:`soft_channels` in TensorFlow (float32)."""
    from iac_tf._keras import tf  # noqa: PLC0415

    form = _soft_form(_mode(classes, mode), metric)
    probs = tf.cast(probs, tf.float32)
    if form == "classes":
        return probs[..., 1:]
    if form == "outputs":
        return probs
    if form == "exclusive":
        winner = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return probs * tf.one_hot(winner, len(classes), dtype=tf.float32)
    inside = tf.constant(containment(classes), tf.float32)
    return tf.reduce_max(probs[..., None, :] * inside, axis=-1)
