"""The discrete Implantable Adaptive Cell trained in Stage III (Algorithm 3).

It lives beside the genotype it is built from: ``iac_tf.genotype`` imports ``iac_tf.search``
(operations, Psi, cell input/output layers) and never the other way round.
"""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer
from iac_tf.genotype.genotype import as_genotype
from iac_tf.implant.composed_conv import can_compose, composed_conv
from iac_tf.search.cell_io import build_io_layers, check_cell_inputs, output_shape
from iac_tf.search.checks import check_positive_int, check_upsampling
from iac_tf.search.kernels import avg_pool_3x3
from iac_tf.search.operations import build_sublayer, make_op


def _train_op(op, x, training):
    """``op(x, training=training)``; a 3x3 average pooling in float32 through the search cell's
    kernel with the hand-written gradient (`iac_tf.search.kernels.avg_pool_3x3`, same maths)."""
    if type(op) is keras.layers.AveragePooling2D and x.dtype == tf.float32:
        return avg_pool_3x3(x)
    return op(x, training=training)


@keras.utils.register_keras_serializable(package="iac_tf")
class DiscreteCell(ScopedLayer):
    """Discrete IAC: each node is the sum of its two chosen operations (no alpha, no beta).

    Same inputs, preprocessing (ReLU, 1x1 conv, BN to C channels) and output 1x1 convolution as
    :class:`SearchCell`; node ``j`` is ``op_a(x_a) + op_b(x_b)`` for the two ``(op, input)``
    pairs of ``genotype.edges[j]``, with affine BatchNorms; the output concatenates all nodes.

    Two U-Net layers around the cell may be taken into it (`iac_tf.implant` does so where they
    fit, through :class:`iac_tf.implant.DiscreteModule`); the cell then computes what the U-Net
    computed with them, with fewer operations:

    * ``input0_upsampling=(sh, sw)``: ``input0`` arrives before the U-Net's nearest
      ``UpSampling2D((sh, sw))``. ReLU and the 1x1 convolution of ``preprocess0`` act pixel by
      pixel, so they run at the low resolution and their C-channel result is upsampled before
      the BN (as in :class:`~iac_tf.search.SearchCell`).
    * ``absorbed``: the frozen ``Conv2D`` that read the cell's output. ``output_conv`` and it are
      one convolution from the ``steps * C`` node channels (`iac_tf.implant.ComposedConv`'s
      formulas); the cell returns that convolution's output. The absorbed layer stays frozen and
      is saved with the cell.

    Args:
        genotype: a :class:`iac_tf.genotype.Genotype` (or its JSON dict / text).
        out_channels: output channels (the replaced concatenation's ``Cu + Cs``).
        C: channels of the cell's internal states.
        input0_upsampling: see above; None (default) for an ``input0`` at ``input1``'s size.
        absorbed: see above; a ``Conv2D`` (or its Keras serialisation), None (default) for none.

    Call arguments:
        inputs: ``[input0, input1]``, ``(B, H, W, Cu)`` and ``(B, H, W, Cs)``.
        training: BatchNorm mode. Returns ``(B, H, W, out_channels)``, or the absorbed layer's
            output.
    """

    def __init__(self, genotype, out_channels, C=16, input0_upsampling=None, absorbed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.genotype = as_genotype(genotype)
        self.out_channels = check_positive_int("DiscreteCell", "out_channels", out_channels)
        self.C = check_positive_int("DiscreteCell", "C", C)
        self.steps = self.genotype.steps
        self.input0_upsampling = check_upsampling(self.name, input0_upsampling)
        self.absorbed = None
        if absorbed is not None:
            self.absorb_conv(absorbed)

    def absorb_conv(self, layer) -> None:
        """Take ``layer`` (a plain ``Conv2D``, frozen) as ``absorbed``; call before building."""
        if isinstance(layer, dict):
            layer = keras.layers.deserialize(layer)
        probe = keras.layers.Conv2D(self.out_channels, 1)  # what output_conv will be
        if not can_compose(probe, layer):
            raise ValueError(f"{self.name}: cannot absorb {type(layer).__name__} {layer.name!r}: "
                             "needs an ungrouped, channels-last Conv2D")
        self.absorbed = layer

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects [input0, input1], got {input_shape}")
        shape0, shape1 = (tf.TensorShape(s) for s in input_shape)
        check_cell_inputs(self.name, shape0, shape1, self.input0_upsampling or (1, 1))
        build_io_layers(self, shape0, shape1, affine=True)
        state = shape1[:-1].concatenate([self.C])
        # flat list, two ops per node in genotype order (Keras-format saving walks flat lists)
        self.node_ops = []
        for j, node in enumerate(self.genotype.edges):
            for k, (op_name, i) in enumerate(node):
                op = make_op(op_name, self.C, True, name=f"node{j}_op{k}_{op_name}_x{i}",
                             dtype=self.dtype_policy)
                self.node_ops.append(build_sublayer(op, state))
        if self.absorbed is not None and not self.absorbed.built:
            build_sublayer(self.absorbed, shape1[:-1].concatenate([self.out_channels]))
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):
        input0, input1 = inputs
        states = [
            self.preprocess0(input0, training=training, upsampling=self.input0_upsampling),
            self.preprocess1(input1, training=training),
        ]
        for j, node in enumerate(self.genotype.edges):
            ops = self.node_ops[2 * j : 2 * j + 2]
            states.append(tf.add_n([_train_op(op, states[i], training) for op, (_, i) in zip(ops, node)]))
        hidden = tf.concat(states[2:], axis=-1)
        if self.absorbed is not None:
            return composed_conv(hidden, self.output_conv, self.absorbed)
        return self.output_conv(hidden)

    def compute_output_shape(self, input_shape):
        shape = output_shape(self, input_shape[1])
        return shape if self.absorbed is None else self.absorbed.compute_output_shape(shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "genotype": self.genotype.to_dict(), "out_channels": self.out_channels, "C": self.C,
            "input0_upsampling": None if self.input0_upsampling is None else list(self.input0_upsampling),
            "absorbed": None if self.absorbed is None else keras.layers.serialize(self.absorbed),
        })
        return config
