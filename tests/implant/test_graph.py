"""The flat call graph of a functional model (``iac_tf/implant/graph.py``) on tiny hand-built
models: the calls in order, which tensor each call reads and makes, the shapes, nested models
kept opaque or flattened (one scope per call of the sub-model), and a replay of the graph through
`call_arguments` that gives the model's own output."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant.graph import (
    Call,
    Graph,
    build_graph,
    call_arguments,
    concat_axis,
    contains_concatenate,
    flatten_if_concatenate,
    is_concatenation,
    is_functional,
    merge_shapes,
    ordered_nodes,
)
from iac_tf.implant.rebuild import sole_consumers


def encoder_model():
    """A sub-model without a concatenation (kept as one call): returns (skip, deep)."""
    x = keras.Input((8, 8, 2), name="enc_in")
    skip = keras.layers.Conv2D(3, 3, padding="same", name="enc_conv")(x)
    deep = keras.layers.MaxPooling2D(name="enc_pool")(skip)
    return keras.Model(x, [skip, deep], name="encoder")


def opaque_model():
    """x -> encoder -> (skip, deep); up(deep) ++ skip -> head."""
    x = keras.Input((8, 8, 2), name="x")
    skip, deep = encoder_model()(x)
    up = keras.layers.UpSampling2D(name="up")(deep)
    cat = keras.layers.Concatenate(name="cat")([up, skip])
    out = keras.layers.Conv2D(1, 1, name="head")(cat)
    return keras.Model(x, out, name="outer")


def block_model():
    """A sub-model with a concatenation (flattened): 2 channels in, 2 out."""
    x = keras.Input((None, None, 2), name="block_in")
    c1 = keras.layers.Conv2D(2, 3, padding="same", name="c1")(x)
    cat = keras.layers.Concatenate(name="bcat")([c1, x])
    return keras.Model(x, keras.layers.Conv2D(2, 1, name="c2")(cat), name="block")


def twice_model():
    """pre -> block -> block (the same sub-model object) -> post."""
    x = keras.Input((8, 8, 2), name="x")
    block = block_model()
    y = keras.layers.Conv2D(2, 1, name="pre")(x)
    y = block(block(y))
    return keras.Model(x, keras.layers.Conv2D(1, 1, name="post")(y), name="twice")


def names(graph: Graph) -> list[str]:
    return [call.layer.name for call in graph.calls]


def by_name(graph: Graph, name: str, scope: int = 0) -> Call:
    (call,) = [c for c in graph.calls if c.layer.name == name and c.scope == scope]
    return call


def readers(graph: Graph) -> dict:
    """Tensor key -> names of the calls that read it (built from ``input_keys``)."""
    found: dict = {}
    for call in graph.calls:
        for key in call.input_keys:
            found.setdefault(key, []).append((call.layer.name, call.scope))
    return found


def replay(graph: Graph, inputs: list):
    """Run the graph call by call, each with its arguments from `call_arguments`."""
    tensors = dict(zip(graph.input_keys, inputs))
    for call in graph.calls:
        args, kwargs = call_arguments(call, tensors)
        outputs = tf.nest.flatten(call.layer(*args, **kwargs))
        assert len(outputs) == len(call.output_keys)
        tensors.update(zip(call.output_keys, outputs))
    return [tensors[key] for key in graph.output_keys]


def test_a_sub_model_without_concatenation_stays_one_call():
    model = opaque_model()
    graph = build_graph(model)
    assert names(graph) == ["encoder", "up", "cat", "head"]
    assert [c.index for c in graph.calls] == [0, 1, 2, 3] and {c.scope for c in graph.calls} == {0}
    encoder, up, cat, head = graph.calls
    assert encoder.layer is model.get_layer("encoder") and head.layer is model.get_layer("head")
    assert graph.model is model and len(graph.input_keys) == 1 and graph.output_keys == head.output_keys
    assert encoder.input_keys == graph.input_keys and len(encoder.output_keys) == 2
    skip, deep = encoder.output_keys
    assert up.input_keys == (deep,)
    assert cat.input_keys == (up.output_keys[0], skip)  # the order of the Concatenate's list
    assert head.input_keys == cat.output_keys
    assert {key: call.layer.name for key, call in graph.producers.items()} == {
        skip: "encoder", deep: "encoder", up.output_keys[0]: "up", cat.output_keys[0]: "cat",
        head.output_keys[0]: "head"}
    assert graph.shapes[graph.input_keys[0]] == (None, 8, 8, 2)
    assert graph.shapes[skip] == (None, 8, 8, 3) and graph.shapes[deep] == (None, 4, 4, 3)
    assert graph.shapes[cat.output_keys[0]] == (None, 8, 8, 6)
    assert graph.shapes[head.output_keys[0]] == (None, 8, 8, 1)
    assert readers(graph) == {graph.input_keys[0]: [("encoder", 0)], skip: [("cat", 0)],
                              deep: [("up", 0)], up.output_keys[0]: [("cat", 0)],
                              cat.output_keys[0]: [("head", 0)]}
    sole = {key: call.layer.name for key, call in sole_consumers(graph).items()}
    # not skip: cat reads it beside up; not head's output: a model output
    assert sole == {graph.input_keys[0]: "encoder", deep: "up", cat.output_keys[0]: "head"}


def test_a_sub_model_with_concatenation_is_flattened_once_per_call():
    model = twice_model()
    graph = build_graph(model)
    assert names(graph) == ["pre", "c1", "bcat", "c2", "c1", "bcat", "c2", "post"]
    assert [c.scope for c in graph.calls] == [0, 1, 1, 1, 2, 2, 2, 0]
    block = model.get_layer("block")
    assert graph.calls[1].layer is graph.calls[4].layer is block.get_layer("c1")  # layers reused
    pre, post = by_name(graph, "pre"), by_name(graph, "post")
    for scope, source in ((1, pre.output_keys[0]), (2, by_name(graph, "c2", 1).output_keys[0])):
        c1, bcat, c2 = (by_name(graph, n, scope) for n in ("c1", "bcat", "c2"))
        assert c1.input_keys == (source,)  # the sub-model's input is the outer tensor
        assert bcat.input_keys == (c1.output_keys[0], source)
        assert c2.input_keys == bcat.output_keys
        # a tensor inside the sub-model has the sub-model's own shape; its output, the alias of
        # the outer call's output, the more specific of the two
        assert graph.shapes[bcat.output_keys[0]] == (None, None, None, 4)
        assert graph.shapes[c2.output_keys[0]] == (None, 8, 8, 2)
        assert readers(graph)[source] == [("c1", scope), ("bcat", scope)]
    assert post.input_keys == by_name(graph, "c2", 2).output_keys
    assert graph.output_keys == post.output_keys
    assert len({k for c in graph.calls for k in c.output_keys}) == 8  # no key shared by scopes
    every_key = {k for c in graph.calls for k in c.input_keys + c.output_keys}
    assert every_key <= set(graph.shapes) and set(graph.producers) == every_key - set(graph.input_keys)


def test_should_flatten_decides_per_sub_model():
    assert names(build_graph(twice_model(), should_flatten=lambda layer: False)) == [
        "pre", "block", "block", "post"]
    flat = build_graph(opaque_model(), should_flatten=is_functional)
    assert names(flat) == ["enc_conv", "enc_pool", "up", "cat", "head"]
    assert [c.scope for c in flat.calls] == [1, 1, 0, 0, 0]
    assert by_name(flat, "cat").input_keys == (by_name(flat, "up").output_keys[0],
                                              by_name(flat, "enc_conv", 1).output_keys[0])


@pytest.mark.parametrize("build", [opaque_model, twice_model])
@pytest.mark.parametrize("flatten", [None, is_functional, lambda layer: False])
def test_replaying_the_graph_gives_the_model_output(build, flatten):
    model = build()
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype("float32")
    (y,) = replay(build_graph(model, should_flatten=flatten), [tf.constant(x)])
    np.testing.assert_allclose(y.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_concatenation_written_as_tf_concat():
    x = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, name="a")(x)
    by_keyword = tf.concat([a, x], axis=3)
    by_position = tf.concat([x, a], 3)
    model = keras.Model(x, [keras.layers.Concatenate(axis=1, name="cat")([by_keyword, by_position])])
    graph = build_graph(model)
    ops = [c for c in graph.calls if getattr(c.layer, "symbol", None) == "concat"]
    assert len(ops) == 2 and all(is_concatenation(c.layer) for c in ops)
    assert [concat_axis(c) for c in ops] == [3, 3]
    assert concat_axis(by_name(graph, "cat")) == 1
    assert not is_concatenation(model.get_layer("a"))
    assert contains_concatenate(model) and flatten_if_concatenate(model)
    (y,) = replay(graph, [tf.ones((1, 4, 4, 2))])
    assert y.shape == (1, 8, 4, 4)
    np.testing.assert_allclose(y.numpy(), model(tf.ones((1, 4, 4, 2))).numpy(), rtol=1e-6)


def test_contains_concatenate_looks_into_nested_models():
    assert not contains_concatenate(encoder_model())
    assert contains_concatenate(block_model())
    x = keras.Input((8, 8, 2))
    deep = keras.Model(x, keras.Sequential([block_model()])(x))  # concat two levels down
    assert contains_concatenate(deep) and flatten_if_concatenate(deep)
    assert not flatten_if_concatenate(encoder_model())
    assert not flatten_if_concatenate(keras.layers.Concatenate())  # a layer, not a model


def test_is_functional():
    assert is_functional(opaque_model())
    built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    assert is_functional(built)
    assert names(build_graph(built)) == ["d"]
    assert not is_functional(keras.Sequential([keras.layers.Dense(2)]))  # not built on an input
    assert not is_functional(keras.layers.Dense(2))


def test_a_subclassed_model_is_rejected():
    class Sub(keras.Model):
        def call(self, inputs):
            return inputs

    model = Sub(name="mine")
    model(tf.zeros((1, 2)))
    assert not is_functional(model)
    with pytest.raises(ValueError, match="'mine' of type Sub is subclassed"):
        build_graph(model)


def test_ordered_nodes_are_topological_without_inputs():
    model = twice_model()
    nodes = ordered_nodes(model)
    assert [n.layer.name for n in nodes] == ["pre", "block", "block", "post"]
    made = {id(t) for t in model.inputs}
    for node in nodes:
        assert not node.is_input and all(id(t) in made for t in node.keras_inputs)
        made.update(id(t) for t in tf.nest.flatten(node.outputs))


@pytest.mark.parametrize("first, second, expected", [
    ((None, 8, None, 2), (None, None, 8, 2), (None, 8, 8, 2)),
    ((1, 2), (None, None), (1, 2)),
    ((None, None), (3, 4), (3, 4)),
    ((1, 2), (5, 6), (1, 2)),  # the first wins where both are known
    ((None, 2), (4, 2, 1), (None, 2)),  # different ranks: the first unchanged
    ((), (), ()),
])
def test_merge_shapes(first, second, expected):
    assert merge_shapes(first, second) == expected


def test_call_arguments_swap_only_the_inputs():
    graph = build_graph(opaque_model())
    cat = by_name(graph, "cat")
    up_key, skip_key = cat.input_keys
    a, b = tf.zeros((1, 8, 8, 3)), tf.ones((1, 8, 8, 3))
    args, kwargs = call_arguments(cat, {up_key: a, skip_key: b, ("unused", 0): None})
    assert len(args) == 1 and args[0][0] is a and args[0][1] is b
    assert kwargs == {k: v for k, v in cat.node.call_kwargs.items()}
    with pytest.raises(KeyError):
        call_arguments(cat, {up_key: a})  # a missing input is not silently kept
