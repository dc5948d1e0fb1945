"""Which tensor of a concatenation is the upsampled decoder tensor.

A U-Net skip connection concatenates `up` (decoder features just brought up to the encoder's
resolution) with `skip` (encoder features at that resolution). `up` is recognised by its recent
history: walking back from it through at most `MAX_STEPS` resolution-preserving layers
(convolutions, BatchNorm, activations, elementwise ops, ...) reaches an *upsampling call*. The
encoder side never meets one. The walk does not cross another `Concatenate` nor a downsampling.

An upsampling call is recognised by shapes where they are static (its 4D output is larger in H or W
and smaller in neither than its first 4D input, whatever the layer: UpSampling2D,
Conv2DTranspose, `tf.image.resize` as a TFOpLambda, Resizing, a Lambda, a custom layer), and by
type or name where they are not (models built on ``(None, None, C)`` inputs).
"""

from __future__ import annotations

from typing import Any

from iac_tf._keras import keras
from iac_tf.implant.graph import Call, Graph, TensorKey, is_concatenation

MAX_STEPS = 8
"""How many layers back from a concat input the walk looks for the upsampling op."""

UPSAMPLING_TYPES = (keras.layers.UpSampling2D, keras.layers.Conv2DTranspose, keras.layers.Resizing)
UPSAMPLING_WORDS = ("resize", "upsampl", "upscal")
"""Words that mark an upsampling TFOpLambda symbol or Lambda function when shapes are dynamic."""


def spatial(shape: tuple) -> tuple | None:
    """``(H, W)`` of a 4D shape ``(batch, H, W, C)``; None for other ranks."""
    return tuple(shape[1:3]) if len(shape) == 4 else None


def first_4d_input(call: Call, graph: Graph) -> TensorKey | None:
    """The first input of ``call`` that is a 4D tensor, if any."""
    return next((k for k in call.input_keys if spatial(graph.shapes[k]) is not None), None)


def compare_resolution(before: tuple, after: tuple) -> str:
    """``"up"``, ``"down"``, ``"same"`` or ``"unknown"`` for the change ``before -> after``."""
    if None in before or None in after:
        return "unknown"
    if after == before:
        return "same"
    if all(a >= b for a, b in zip(after, before)):
        return "up"
    return "down" if all(a <= b for a, b in zip(after, before)) else "unknown"


def _named_upsampling(layer: Any) -> bool:
    names = [
        getattr(layer, "symbol", ""),
        getattr(getattr(layer, "function", None), "__name__", ""),
    ]
    return any(word in str(name).lower() for name in names for word in UPSAMPLING_WORDS)


def resolution_change(call: Call, graph: Graph) -> str:
    """How ``call`` changes spatial resolution: ``"up"``, ``"down"``, ``"same"``, ``"unknown"``."""
    source = first_4d_input(call, graph)
    if source is None or not call.output_keys:
        return "unknown"
    after = spatial(graph.shapes[call.output_keys[0]])
    if after is None:
        return "unknown"
    change = compare_resolution(spatial(graph.shapes[source]), after)
    if change == "unknown" and (
        isinstance(call.layer, UPSAMPLING_TYPES) or _named_upsampling(call.layer)
    ):
        return "up"
    return change


def find_upsampling(graph: Graph, key: TensorKey, max_steps: int = MAX_STEPS) -> Call | None:
    """The upsampling call within ``max_steps`` resolution-preserving layers before ``key``.

    Breadth-first over the producers of ``key`` (all their 4D inputs, so an ``Add`` of two
    branches is followed on both), stopping at graph inputs, at other concatenations and at
    downsampling calls. Returns the nearest upsampling call, or None.
    """
    frontier, seen = [key], {key}
    for _ in range(max_steps):
        upcoming = []
        for current in frontier:
            call = graph.producers.get(current)
            if call is None or is_concatenation(call.layer):
                continue
            change = resolution_change(call, graph)
            if change == "up":
                return call
            if change == "down":
                continue
            for parent in call.input_keys:
                if parent not in seen and spatial(graph.shapes[parent]) is not None:
                    seen.add(parent)
                    upcoming.append(parent)
        frontier = upcoming
    return None


def nearest_upsampling(layer: Any) -> tuple[int, int] | None:
    """``(sh, sw)`` of a nearest, channels-last ``UpSampling2D`` (exactly that class), else None:
    the upsampling a cell may take in (`implant`'s ``absorb_input``)."""
    if (type(layer) is keras.layers.UpSampling2D and layer.interpolation == "nearest"
            and layer.data_format == "channels_last"):
        return tuple(int(v) for v in layer.size)
    return None
