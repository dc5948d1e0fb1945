"""Find the skip connections of any functional Keras U-Net.

A skip connection (Fig. 1 of the paper, the "Adaptive OP" of Stage I) is a `Concatenate` (or a
``tf.concat`` in the functional graph) of
exactly two 4D tensors along channels, with equal H and W, where one input (`up`) is the decoder
tensor just upsampled (see `iac_tf.implant.upsampling`) and the other (`skip`) comes from the
encoder. The concatenation may list them in either order; `SkipConnection.up_index` says which.

Levels count from the deepest skip: level 0 has the lowest resolution, like
segmentation_models' ``decoder_stage0``. Ties in resolution (and models with dynamic H, W) keep
the graph's topological order, which in a U-Net decoder is deepest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iac_tf.errors import UserValueError
from iac_tf.implant.graph import Call, Graph, build_graph, concat_axis, is_concatenation
from iac_tf.implant.upsampling import MAX_STEPS, find_upsampling, spatial


@dataclass(frozen=True)
class SkipConnection:
    """One skip connection of a U-Net.

    Attributes:
        level: 0 for the deepest (lowest-resolution) skip, increasing towards the output.
        concat_name: name of the `Concatenate` layer that forms it.
        up_name: name of the layer producing the `up` input (the upsampled decoder tensor).
        skip_name: name of the layer producing the `skip` input (encoder; for an encoder kept as
            a nested sub-model, the sub-model's name).
        up_shape: shape of `up` without batch, ``(H, W, C_up)``.
        skip_shape: shape of `skip` without batch, ``(H, W, C_skip)``.
        out_shape: shape of the concatenation without batch, ``(H, W, C_up + C_skip)``.
        up_index: position of `up` among the concat's inputs: 0 for ``[up, skip]`` (zoo and
            segmentation_models), 1 for ``[skip, up]``.
        upsampling_name: name of the upsampling layer found behind `up`.
    """

    level: int
    concat_name: str
    up_name: str
    skip_name: str
    up_shape: tuple
    skip_shape: tuple
    out_shape: tuple
    up_index: int = 0
    upsampling_name: str = ""


class NoSkipConnectionsError(UserValueError):
    """No skip connection was found; ``inspected`` lists ``(concat name, why rejected)``."""

    def __init__(self, model_name: str, inspected: list[tuple[str, str]], n_calls: int):
        self.inspected = inspected
        if inspected:
            lines = "\n".join(f"  - {name}: {reason}" for name, reason in inspected)
            detail = f"{len(inspected)} Concatenate call(s) inspected, none accepted:\n{lines}"
        else:
            detail = "the model has no Concatenate layer"
        super().__init__(
            f"No U-Net skip connection found in model {model_name!r} ({n_calls} layer calls "
            f"walked, nested models containing a Concatenate flattened): {detail}\n"
            "A skip connection is a Concatenate(axis=-1) of two 4D tensors of equal H, W, one of "
            f"them produced by an upsampling op at most {MAX_STEPS} resolution-preserving layers "
            "earlier (UpSampling2D, Conv2DTranspose, tf.image.resize, Resizing, ...)."
        )


def _name(call: Call | None) -> str:
    return call.layer.name if call is not None else "input"


def _no_batch(shape: tuple) -> tuple:
    return tuple(shape[1:])


def examine_concat(graph: Graph, call: Call) -> tuple[int, Call] | str:
    """``(up_index, upsampling call)`` if ``call`` is a skip connection, else why it is not."""
    axis = concat_axis(call)
    shapes = [graph.shapes[k] for k in call.input_keys]
    if len(shapes) != 2:
        return f"has {len(shapes)} inputs, a skip connection has 2"
    if any(len(s) != 4 for s in shapes):
        return f"inputs are not 4D (shapes {shapes})"
    if axis not in (-1, 3):
        return f"concatenates along axis {axis}, not channels"
    (h0, w0), (h1, w1) = spatial(shapes[0]), spatial(shapes[1])
    if any(a is not None and b is not None and a != b for a, b in ((h0, h1), (w0, w1))):
        return f"inputs differ in H, W ({shapes[0]} vs {shapes[1]})"
    found = [find_upsampling(graph, key) for key in call.input_keys]
    if found[0] is not None and found[1] is not None:
        return (
            f"both inputs are upsampled (by {found[0].layer.name!r} and {found[1].layer.name!r}),"
            " so neither is the encoder side"
        )
    if found[0] is None and found[1] is None:
        return f"no input is produced by an upsampling op within {MAX_STEPS} layers"
    up_index = 0 if found[0] is not None else 1
    return up_index, found[up_index]


def locate_skips(graph: Graph) -> list[tuple[SkipConnection, Call]]:
    """The skip connections of ``graph``, each with its concat call, ordered by level.

    Raises:
        NoSkipConnectionsError: none found.
    """
    accepted, rejected = [], []
    for call in graph.calls:
        if not is_concatenation(call.layer):
            continue
        verdict = examine_concat(graph, call)
        if isinstance(verdict, str):
            rejected.append((call.layer.name, verdict))
        else:
            accepted.append((call, *verdict))
    if not accepted:
        raise NoSkipConnectionsError(graph.model.name, rejected, len(graph.calls))

    def depth_order(item: tuple) -> tuple:
        height, width = spatial(graph.shapes[item[0].output_keys[0]])
        return (height * width if height and width else 0, item[0].index)

    located = []
    for level, (call, up_index, upsampling) in enumerate(sorted(accepted, key=depth_order)):
        up_key, skip_key = call.input_keys[up_index], call.input_keys[1 - up_index]
        record = SkipConnection(
            level=level,
            concat_name=call.layer.name,
            up_name=_name(graph.producers.get(up_key)),
            skip_name=_name(graph.producers.get(skip_key)),
            up_shape=_no_batch(graph.shapes[up_key]),
            skip_shape=_no_batch(graph.shapes[skip_key]),
            out_shape=_no_batch(graph.shapes[call.output_keys[0]]),
            up_index=up_index,
            upsampling_name=upsampling.layer.name,
        )
        located.append((record, call))
    return located


def find_skip_connections(model: Any) -> list[SkipConnection]:
    """The skip connections of a functional U-Net, ordered by level (0 = deepest).

    Works on models built in code or loaded with `keras.models.load_model` (.h5, .keras,
    SavedModel); nested sub-models are handled as described in `iac_tf.implant.graph`.

    Raises:
        NoSkipConnectionsError: none found; the message lists every Concatenate inspected and
            why it was rejected.
    """
    return [record for record, _ in locate_skips(build_graph(model))]
