"""Unique weight names for the package's layers that hold inner layers.

A weight's name (``iac_cell_level0/preprocess0/conv/kernel:0``) is the name scope it was created
in. Two places need the names unique: the legacy ``.h5`` format (one dataset per weight name in
a layer's group) and the optimiser slots written into a ``.h5`` (one group for every
``Adam/m/<weight name>``, across all layers). Two rules keep them unique, however the layer was
built:

* :func:`build_sublayer` builds an inner layer under its own name (``preprocess0/conv/...``);
* :class:`ScopedLayer` builds a layer loaded from a ``.keras`` file (``build_from_config``, which
  Keras calls outside the layer's name scope) under the layer's own name, as a layer built by
  its first call is (``iac_cell_level0/...``).

Names are not part of ``.keras`` files or checkpoints (both address weights by the layers'
attributes), so neither rule changes what loads. See docs/decisions.md ("Keras interop").
"""

from __future__ import annotations

from iac_tf._keras import keras, tf


def build_sublayer(layer, input_shape):
    """Build ``layer`` now, under its own name scope (unique weight names, needed by .h5)."""
    if isinstance(input_shape, (list, tuple)) and input_shape and not isinstance(
        input_shape[0], (int, type(None))
    ):
        input_shape = [tf.TensorShape(s) for s in input_shape]  # a layer with several inputs
    else:
        input_shape = tf.TensorShape(input_shape)
    with tf.name_scope(layer.name):
        layer.build(input_shape)
    return layer


class ScopedLayer(keras.layers.Layer):
    """A Keras layer whose build from a saved config runs under its own name scope."""

    def build_from_config(self, config):
        with tf.name_scope(self.name):
            super().build_from_config(config)


__all__ = ["ScopedLayer", "build_sublayer"]
