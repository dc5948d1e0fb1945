"""Which input of a concatenation is the upsampled decoder tensor
(:mod:`iac_tf.implant.upsampling`): the walk back finds the upsampling call behind ``up`` within
``MAX_STEPS`` resolution-preserving layers, by shapes where they are static and by type or name
where they are not, never behind the encoder's ``skip``; and which layer a cell may take in."""

import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant.graph import build_graph
from iac_tf.implant.upsampling import (compare_resolution, find_upsampling, nearest_upsampling,
                                       spatial)

L = keras.layers


def _graph(size=8, make_up=lambda: L.UpSampling2D(name="up"), between=2):
    x_in = keras.Input((size, size, 2))
    skip = L.Conv2D(4, 3, padding="same", name="skip_conv")(x_in)
    x = L.MaxPool2D(name="pool")(skip)
    x = make_up()(x)
    for i in range(between):
        x = L.Conv2D(4, 3, padding="same", name=f"dec{i}")(x)
    x = L.Concatenate(name="concat")([x, skip])
    graph = build_graph(keras.Model(x_in, x))
    key = {call.layer.name: call.output_keys[0] for call in graph.producers.values()}
    return graph, key


def test_the_walk_finds_the_upsampling_behind_up_only():
    graph, key = _graph()
    assert find_upsampling(graph, key[f"dec{1}"]).layer.name == "up"
    assert find_upsampling(graph, key["skip_conv"]) is None  # the encoder side meets none
    assert find_upsampling(graph, key["dec1"], max_steps=2) is None  # too far back
    assert find_upsampling(graph, key["dec1"], max_steps=3).layer.name == "up"
    assert find_upsampling(graph, key["concat"]) is None  # never through another concatenation


@pytest.mark.parametrize("make_up", [
    lambda: L.Conv2DTranspose(4, 2, strides=2, name="up"),
    lambda: L.Resizing(8, 8, name="up"),
    lambda: L.Lambda(lambda t: tf.image.resize(t, (8, 8)), name="up"),
], ids=["transposed", "resizing", "lambda"])
def test_any_layer_that_enlarges_counts_where_shapes_are_static(make_up):
    graph, key = _graph(make_up=make_up)
    assert find_upsampling(graph, key["dec1"]).layer.name == "up"


def test_dynamic_shapes_are_decided_by_type_or_name():
    def dynamic(make_up):
        x_in = keras.Input((None, None, 2))
        x = make_up()(L.MaxPool2D()(x_in))
        x = L.Conv2D(2, 3, padding="same", name="dec")(x)
        graph = build_graph(keras.Model(x_in, L.Concatenate()([x, x_in])))
        key = {call.layer.name: call.output_keys[0] for call in graph.producers.values()}
        found = find_upsampling(graph, key["dec"])
        return None if found is None else found.layer.name

    def resize_up(t):
        return tf.image.resize(t, tf.shape(t)[1:3] * 2)

    def identity(t):
        return t

    assert dynamic(lambda: L.UpSampling2D(name="up")) == "up"
    assert dynamic(lambda: L.Lambda(resize_up, name="up")) == "up"  # "resize" in its name
    assert dynamic(lambda: L.Lambda(identity, name="up")) is None


def test_resolution_changes():
    assert compare_resolution((4, 4), (8, 8)) == "up" and compare_resolution((4, 4), (4, 8)) == "up"
    assert compare_resolution((8, 8), (4, 4)) == "down" and compare_resolution((4, 4), (4, 4)) == "same"
    assert compare_resolution((4, 8), (8, 4)) == "unknown"
    assert compare_resolution((None, 4), (8, 8)) == "unknown"
    assert spatial((None, 4, 5, 3)) == (4, 5) and spatial((None, 3)) is None


def test_only_a_nearest_channels_last_upsampling_can_be_taken_in():
    assert nearest_upsampling(L.UpSampling2D(2)) == (2, 2)
    assert nearest_upsampling(L.UpSampling2D((2, 3))) == (2, 3)
    assert nearest_upsampling(L.UpSampling2D(2, interpolation="bilinear")) is None
    assert nearest_upsampling(L.UpSampling2D(2, data_format="channels_first")) is None
    assert nearest_upsampling(L.Conv2DTranspose(4, 2, strides=2)) is None

    class Custom(L.UpSampling2D):
        pass

    assert nearest_upsampling(Custom(2)) is None  # exactly the Keras class
