"""A functional Keras model as a flat, topologically ordered list of layer calls.

`find_skip_connections` and `implant` both work on this view of a model. It is built by walking
``model._nodes_by_depth`` from the inputs (largest depth) to the outputs (depth 0), with an
explicit stack and no recursion over the graph: a resnet50 U-Net has hundreds of nodes in a chain,
enough to exhaust Python's recursion limit in a recursive walk.

Nested functional sub-models (a `keras.Model` called as a layer) are handled in one of two ways:

* **opaque**: a sub-model with no `Concatenate` layer inside (typically a wrapped encoder) stays
  one call; `implant` calls the sub-model object itself, so its structure and layer names stay.
* **flattened**: a sub-model that contains a `Concatenate` (e.g. a whole U-Net wrapped in an outer
  model) is expanded into the calls of its own layers, so its concatenations can be found and
  replaced. Each expansion gets its own *scope*, so a sub-model called twice expands twice.

A tensor is identified by a `TensorKey`, ``(scope, id(keras_tensor))``. The inputs of a flattened
sub-model and the outputs of its outer call are *aliases* of other keys; every key stored in a
`Call` or `Graph` is already resolved to its canonical key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from iac_tf._keras import keras, tf

TensorKey = tuple[int, int]


@dataclass(frozen=True)
class Call:
    """One call of one layer in the flattened graph.

    Attributes:
        index: position in the topological order of `Graph.calls`.
        layer: the original layer object (reused as is by `implant`).
        node: the original Keras ``Node``; its ``call_args``/``call_kwargs`` are the template of
            the call, with Keras tensors standing for the inputs.
        input_keys: canonical keys of ``node.keras_inputs``, in the same order.
        output_keys: keys of the node's flattened outputs.
        scope: the expansion scope the node's own tensors live in (0: the outer model).
    """

    index: int
    layer: Any
    node: Any
    input_keys: tuple[TensorKey, ...]
    output_keys: tuple[TensorKey, ...]
    scope: int


@dataclass(frozen=True)
class Graph:
    """A model as calls in topological order, with the static shape of every tensor."""

    model: Any
    calls: tuple[Call, ...]
    input_keys: tuple[TensorKey, ...]
    output_keys: tuple[TensorKey, ...]
    shapes: dict[TensorKey, tuple] = field(repr=False)
    producers: dict[TensorKey, Call] = field(repr=False)


def is_functional(layer: Any) -> bool:
    """Whether ``layer`` is a graph-network `keras.Model` (functional or built Sequential)."""
    return isinstance(layer, keras.Model) and bool(getattr(layer, "_is_graph_network", False))


def is_concatenation(layer: Any) -> bool:
    """A `Concatenate` layer, or ``tf.concat`` used in a functional model (a TFOpLambda)."""
    return isinstance(layer, keras.layers.Concatenate) or getattr(layer, "symbol", None) == "concat"


def concat_axis(call: Call) -> Any:
    """The axis a concatenation call joins along (an int, or whatever the graph passed)."""
    if isinstance(call.layer, keras.layers.Concatenate):
        return call.layer.axis
    args, kwargs = call.node.call_args, call.node.call_kwargs
    return kwargs.get("axis", args[1] if len(args) > 1 else None)


def contains_concatenate(model: Any) -> bool:
    """Whether a concatenation layer is anywhere inside ``model`` (nested models included)."""
    stack = [model]
    while stack:
        layer = stack.pop()
        if is_concatenation(layer):
            return True
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return False


def flatten_if_concatenate(layer: Any) -> bool:
    """The default rule: expand a nested functional model iff it contains a `Concatenate`."""
    return is_functional(layer) and contains_concatenate(layer)


def ordered_nodes(model: Any) -> list:
    """The non-input nodes of a functional model in a topological order (inputs first)."""
    depths = sorted(model._nodes_by_depth, reverse=True)
    return [node for depth in depths for node in model._nodes_by_depth[depth] if not node.is_input]


def merge_shapes(first: tuple, second: tuple) -> tuple:
    """The more specific of two static shapes of the same tensor (dimension by dimension)."""
    if len(first) != len(second):
        return first
    return tuple(a if a is not None else b for a, b in zip(first, second))


def _shape(tensor: Any) -> tuple:
    return tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else ()


def build_graph(model: Any, should_flatten: Callable[[Any], bool] | None = None) -> Graph:
    """Flatten ``model`` into a `Graph`.

    Args:
        model: a functional `keras.Model` (also Sequential built on an input, or a model loaded
            with `keras.models.load_model`).
        should_flatten: decides for each nested functional sub-model whether to expand it; the
            default expands exactly the sub-models that contain a `Concatenate`.

    Raises:
        ValueError: the model is subclassed (no graph to walk).
    """
    if not is_functional(model):
        raise ValueError(
            f"iac_tf.implant needs a functional Keras model (keras.Model(inputs, outputs) or a "
            f"built Sequential); {model.name!r} of type {type(model).__name__} is subclassed, "
            "so its graph cannot be walked."
        )
    if should_flatten is None:
        should_flatten = flatten_if_concatenate

    alias: dict[TensorKey, TensorKey] = {}
    shapes: dict[TensorKey, tuple] = {}
    producers: dict[TensorKey, Call] = {}
    calls: list[Call] = []

    def resolve(key: TensorKey) -> TensorKey:
        while key in alias:
            key = alias[key]
        return key

    def note_shape(key: TensorKey, tensor: Any) -> None:
        shapes[key] = merge_shapes(shapes[key], _shape(tensor)) if key in shapes else _shape(tensor)

    input_keys = tuple((0, id(t)) for t in model.inputs)
    for key, tensor in zip(input_keys, model.inputs):
        note_shape(key, tensor)

    next_scope = 1
    stack: list[tuple[Iterator, int]] = [(iter(ordered_nodes(model)), 0)]
    while stack:
        nodes, scope = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        in_keys = tuple(resolve((scope, id(t))) for t in node.keras_inputs)
        outputs = tf.nest.flatten(node.outputs)
        out_keys = tuple((scope, id(t)) for t in outputs)
        if should_flatten(node.layer):
            inner, inner_scope = node.layer, next_scope
            next_scope += 1
            outer_inputs = inner._flatten_to_reference_inputs(node.call_args[0])
            for inner_input, outer_input in zip(inner.inputs, outer_inputs):
                alias[(inner_scope, id(inner_input))] = resolve((scope, id(outer_input)))
            for outer_key, outer_output, inner_output in zip(out_keys, outputs, inner.outputs):
                alias[outer_key] = resolve((inner_scope, id(inner_output)))
                note_shape(alias[outer_key], inner_output)
                note_shape(alias[outer_key], outer_output)
            stack.append((iter(ordered_nodes(inner)), inner_scope))
            continue
        call = Call(len(calls), node.layer, node, in_keys, out_keys, scope)
        calls.append(call)
        for key, tensor in zip(out_keys, outputs):
            producers[key] = call
            note_shape(key, tensor)

    output_keys = tuple(resolve((0, id(t))) for t in model.outputs)
    return Graph(model, tuple(calls), input_keys, output_keys, shapes, producers)


def call_arguments(call: Call, tensors: dict[TensorKey, Any]) -> tuple[list, dict]:
    """The positional and keyword arguments of ``call`` with its inputs taken from ``tensors``."""
    new_by_id = {id(kt): tensors[key] for kt, key in zip(call.node.keras_inputs, call.input_keys)}

    def swap(obj: Any) -> Any:
        return new_by_id.get(id(obj), obj)

    args = tf.nest.map_structure(swap, list(call.node.call_args))
    kwargs = {k: tf.nest.map_structure(swap, v) for k, v in call.node.call_kwargs.items()}
    return args, kwargs
