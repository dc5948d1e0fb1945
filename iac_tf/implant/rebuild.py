"""Implant modules into the skip connections of a trained U-Net (Fig. 1: the "Adaptive OP").

`implant` replays the U-Net's graph call by call (`iac_tf.implant.graph`), reusing the original
layer objects and so their weights, and calls a new module in place of each skip connection's
concatenation. The original layers are frozen (`freeze_unet`) and called with ``training=False``:
the U-Net is a fixed function in Stages II and III; only the modules' own layers train.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iac_tf.errors import UserError
from iac_tf._keras import keras, tf
from iac_tf.implant.freeze import freeze_unet, iter_layers, train_only_trainable
from iac_tf.implant.graph import Call, Graph, TensorKey, build_graph, call_arguments
from iac_tf.implant.modules import MakeModule
from iac_tf.implant.skips import SkipConnection, locate_skips


class ImplantError(UserError):
    """A module does not fit its skip connection (wrong output, or a name already taken)."""


def _check_output(skip: SkipConnection, module: Any, output: Any) -> None:
    if not hasattr(output, "shape") or isinstance(output, (list, tuple)):
        raise ImplantError(
            f"The module for skip level {skip.level} ({skip.concat_name!r}) returned "
            f"{type(output).__name__}, expected one tensor of shape {skip.out_shape}."
        )
    got = tuple(output.shape.as_list()[1:]) if output.shape.rank is not None else None
    if got is None or not tf.TensorShape(got).is_compatible_with(skip.out_shape):
        raise ImplantError(
            f"The module for skip level {skip.level} ({skip.concat_name!r}, {module!r}) returned "
            f"shape {got}; it must return the concatenation's shape {skip.out_shape} "
            f"(up {skip.up_shape} + skip {skip.skip_shape} along channels)."
        )


def _check_name(skip: SkipConnection, module: Any, taken: dict[str, Any]) -> None:
    if not isinstance(module, keras.layers.Layer):
        return
    owner = taken.get(module.name)
    if owner is not None and owner is not module:
        raise ImplantError(
            f"The module for skip level {skip.level} is named {module.name!r}, a name already "
            "used in the model; name modules with iac_tf.implant.module_name(prefix, level)."
        )
    taken[module.name] = module


def _in_inference_mode(layer: Any, args: list, kwargs: dict) -> tuple[list, dict]:
    """The call arguments with ``training=False``, also where the graph passed it positionally."""
    if not getattr(layer, "_expects_training_arg", False):
        return args, kwargs
    spec = getattr(layer, "_call_spec", None)
    if spec is None:
        return args, {**kwargs, "training": False}
    return spec.set_arg_value("training", False, args, kwargs, inputs_in_args=True)


def _readers(graph: Graph) -> dict[TensorKey, list[Call]]:
    """Tensor -> the calls that read it (each once)."""
    readers: dict[TensorKey, list[Call]] = {}
    for call in graph.calls:
        for key in set(call.input_keys):
            readers.setdefault(key, []).append(call)
    return readers


def sole_consumers(graph: Graph) -> dict[TensorKey, Call]:
    """Tensor -> the one call that reads it, for tensors read by exactly one call, as that
    call's only input, and that are not model outputs."""
    outputs = set(graph.output_keys)
    return {key: calls[0] for key, calls in _readers(graph).items()
            if len(calls) == 1 and key not in outputs and calls[0].input_keys == (key,)}


def reader_counts(graph: Graph) -> dict[TensorKey, int]:
    """Tensor -> how many calls read it (a model output counts as one more reader)."""
    counts = {key: len(calls) for key, calls in _readers(graph).items()}
    for key in graph.output_keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def absorbed_input(module: Any, graph: Graph, key: TensorKey, readers: dict) -> TensorKey | None:
    """``module.absorb_input(layer)``, the module's offer to take the input of the layer that
    made its ``up`` tensor instead (e.g. a nearest ``UpSampling2D``), asked only where that
    layer has one input and its output no other reader; the key of that input if accepted."""
    absorb = getattr(module, "absorb_input", None)
    producer = graph.producers.get(key)
    if absorb is None or producer is None or readers.get(key, 0) != 1:
        return None
    if len(producer.input_keys) != 1 or len(producer.output_keys) != 1:
        return None
    return producer.input_keys[0] if absorb(producer.layer) else None


def absorbed_consumer(module: Any, consumer: Call | None) -> Callable | None:
    """``module.absorb(layer)``, the module's offer to compute ``layer(module(inputs))`` itself
    (e.g. `ComposedConv`), for the one layer that reads the module's output; else None."""
    absorb = getattr(module, "absorb", None)
    if consumer is None or absorb is None:
        return None
    args, kwargs = consumer.node.call_args, dict(consumer.node.call_kwargs)
    kwargs.pop("training", None)
    if len(args) != 1 or kwargs:
        return None
    return absorb(consumer.layer)


def absorptions(module: Any, graph: Graph, skip: SkipConnection, call: Call, readers: dict,
                sole_consumer: dict) -> tuple[TensorKey | None, Call | None, Callable | None]:
    """What ``module`` takes over around the concatenation ``call`` of ``skip``: the key of the
    tensor to pass as ``up`` instead (`absorbed_input`, else None), and the consumer call with
    the callable computing its output (`absorbed_consumer`, else ``(None, None)``).

    ``readers`` and ``sole_consumer`` are `reader_counts` and `sole_consumers` of ``graph``."""
    before_up = absorbed_input(module, graph, call.input_keys[skip.up_index], readers)
    consumer = sole_consumer.get(call.output_keys[0]) if len(call.output_keys) == 1 else None
    fused = absorbed_consumer(module, consumer)
    return before_up, (consumer if fused is not None else None), fused


def _replay(graph: Graph, located: list, make_module: MakeModule) -> list:
    """The new output tensors of the model (flat, in ``graph.output_keys`` order)."""
    by_call = {call.index: skip for skip, call in located}
    taken = {layer.name: layer for layer in iter_layers(graph.model)}
    sole_consumer = sole_consumers(graph)
    readers = reader_counts(graph)
    done: set[int] = set()  # consumer calls a module absorbed
    tensors: dict[TensorKey, Any] = dict(zip(graph.input_keys, graph.model.inputs))
    for call in graph.calls:
        if call.index in done:
            continue
        skip = by_call.get(call.index)
        if skip is not None:
            up = tensors[call.input_keys[skip.up_index]]
            encoder = tensors[call.input_keys[1 - skip.up_index]]
            module = make_module(skip.level, skip.up_shape, skip.skip_shape)
            _check_name(skip, module, taken)
            before_up, consumer, fused = absorptions(module, graph, skip, call, readers, sole_consumer)
            if before_up is not None:
                up = tensors[before_up]  # the module upsamples (its producer's call goes unused)
            if fused is not None:
                # The module computes its consumer's output; the consumer's call is skipped.
                outputs = fused([up, encoder])
                _check_absorbed(skip, consumer, graph.shapes[consumer.output_keys[0]], outputs)
                tensors[consumer.output_keys[0]] = outputs
                done.add(consumer.index)
                continue
            outputs = module([up, encoder])
            _check_output(skip, module, outputs)
        else:
            # The frozen U-Net always runs in inference mode (BatchNorm, Dropout, ...).
            args, kwargs = _in_inference_mode(call.layer, *call_arguments(call, tensors))
            outputs = call.layer(*args, **kwargs)
        for key, tensor in zip(call.output_keys, tf.nest.flatten(outputs)):
            tensors[key] = tensor
    return [tensors[key] for key in graph.output_keys]


def _check_absorbed(skip: SkipConnection, consumer: Call, shape: tuple, output: Any) -> None:
    got = tuple(output.shape.as_list()) if getattr(output, "shape", None) is not None else None
    if got is None or not tf.TensorShape(got).is_compatible_with(shape):
        raise ImplantError(
            f"The module for skip level {skip.level} absorbed {consumer.layer.name!r} but returned "
            f"shape {got}; that layer's output has shape {shape}."
        )


def implant(model: Any, make_module: MakeModule, name: str | None = None) -> Any:
    """A new model: ``model`` with a module in place of each skip-connection concatenation.

    For each skip connection (see `find_skip_connections`, level 0 = deepest) this calls
    ``make_module(level, up_shape, skip_shape)`` and then ``module([up, skip])``; the module must
    return one tensor of the concatenation's shape ``out_shape``. Inputs are always passed as
    ``[up, skip]``, also where the U-Net concatenated ``[skip, up]``; `original_concat` builds
    modules that reproduce the original concatenations exactly.

    A module may also take over the layer that reads its output: where the concatenation's
    output is read by exactly one call, as its only input, and the module has a method
    ``absorb(layer)`` that returns a callable (not None), that callable is called with ``[up,
    skip]`` in place of both the module and the layer, and must return the layer's output (the
    search cells compose their output 1x1 convolution with the next frozen convolution this
    way: `ComposedConv`). Likewise, where the ``up`` tensor is made by a one-input layer and
    read by the concatenation alone, a module with ``absorb_input(layer)`` returning True gets
    that layer's input as ``up`` instead (the search cells take the tensor before a nearest
    ``UpSampling2D`` and preprocess it at the low resolution).

    The new model reuses the layer objects of ``model`` (same weights). ``model`` is frozen in
    place (`freeze_unet`: every layer ``trainable=False``) and each of its layers is called with
    ``training=False``, so BatchNorm statistics and Dropout stay in inference mode even when the
    new model is trained; the modules' layers stay trainable. Its ``train_step`` records only
    what reads the modules' variables (`train_only_trainable`): no gradient work for the encoder.

    Args:
        model: a functional U-Net, built in code or loaded with `keras.models.load_model`.
        make_module: ``(level, up_shape, skip_shape) -> module``; shapes are ``(H, W, C)``.
        name: the new model's name; default ``f"{model.name}_implanted"``.

    Raises:
        NoSkipConnectionsError: the model has no skip connection.
        ImplantError: a module returned the wrong shape or reused a taken layer name.
    """
    graph = build_graph(model)
    located = locate_skips(graph)
    freeze_unet(model)
    outputs = _replay(graph, located, make_module)
    structure = model._nested_outputs
    outputs = tf.nest.pack_sequence_as(structure, outputs)
    implanted = keras.Model(model.inputs, outputs, name=name or f"{model.name}_implanted")
    return train_only_trainable(implanted)
