"""The discrete Implantable Adaptive Cell trained in Stage III (Algorithm 3).

It lives beside the genotype it is built from: ``iac_tf.genotype`` imports ``iac_tf.search``
(operations, Psi, cell input/output layers) and never the other way round.
"""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.genotype.genotype import as_genotype
from iac_tf.search.cell_io import build_io_layers, check_cell_inputs, output_shape
from iac_tf.search.checks import check_positive_int
from iac_tf.search.operations import build_sublayer, make_op


@keras.utils.register_keras_serializable(package="iac_tf")
class DiscreteCell(keras.layers.Layer):
    """Discrete IAC: each node is the sum of its two chosen operations (no alpha, no beta).

    Same inputs, preprocessing (ReLU, 1x1 conv, BN to C channels) and output 1x1 convolution as
    :class:`SearchCell`; node ``j`` is ``op_a(x_a) + op_b(x_b)`` for the two ``(op, input)``
    pairs of ``genotype.edges[j]``, with affine BatchNorms; the output concatenates all nodes.

    Args:
        genotype: a :class:`iac_tf.genotype.Genotype` (or its JSON dict / text).
        out_channels: output channels (the replaced concatenation's ``Cu + Cs``).
        C: channels of the cell's internal states.

    Call arguments:
        inputs: ``[input0, input1]``, ``(B, H, W, Cu)`` and ``(B, H, W, Cs)``.
        training: BatchNorm mode. Returns ``(B, H, W, out_channels)``.
    """

    def __init__(self, genotype, out_channels, C=16, **kwargs):
        super().__init__(**kwargs)
        self.genotype = as_genotype(genotype)
        self.out_channels = check_positive_int("DiscreteCell", "out_channels", out_channels)
        self.C = check_positive_int("DiscreteCell", "C", C)
        self.steps = self.genotype.steps

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects [input0, input1], got {input_shape}")
        shape0, shape1 = (tf.TensorShape(s) for s in input_shape)
        check_cell_inputs(self.name, shape0, shape1)
        build_io_layers(self, shape0, shape1, affine=True)
        state = shape0[:-1].concatenate([self.C])
        # flat list, two ops per node in genotype order (Keras-format saving walks flat lists)
        self.node_ops = []
        for j, node in enumerate(self.genotype.edges):
            for k, (op_name, i) in enumerate(node):
                op = make_op(op_name, self.C, True, name=f"node{j}_op{k}_{op_name}_x{i}",
                             dtype=self.dtype_policy)
                self.node_ops.append(build_sublayer(op, state))
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):
        input0, input1 = inputs
        states = [
            self.preprocess0(input0, training=training),
            self.preprocess1(input1, training=training),
        ]
        for j, node in enumerate(self.genotype.edges):
            ops = self.node_ops[2 * j : 2 * j + 2]
            states.append(tf.add_n([op(states[i], training=training) for op, (_, i) in zip(ops, node)]))
        return self.output_conv(tf.concat(states[2:], axis=-1))

    def compute_output_shape(self, input_shape):
        return output_shape(self, input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"genotype": self.genotype.to_dict(), "out_channels": self.out_channels, "C": self.C}
        )
        return config
