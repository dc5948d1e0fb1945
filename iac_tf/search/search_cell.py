"""The continuous Implantable Adaptive Cell used during search (Fig. 2-4, Algorithm 2)."""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer
from iac_tf.search.cell_io import build_io_layers, check_cell_inputs, output_shape, static_training
from iac_tf.search.checks import check_positive_int, check_upsampling
from iac_tf.search.fused_cell import fused_nodes
from iac_tf.search.mixed_op import MixedOp, check_partial_channels
from iac_tf.search.operations import PRIMITIVES, build_sublayer, upsample_nearest
from iac_tf.search.psi import PsiEdgeNorm, check_mode
from iac_tf.search.topology import DEFAULT_STEPS, edge_list, node_edge_slices, num_edges

IMPLEMENTATIONS = ("fused", "reference")


def _keras_shape_inference(layer) -> bool:
    """True while tf_keras infers ``layer``'s output signature on symbolic inputs (functional
    construction), which it does by calling the layer in a graph named ``<name>_scratch_graph``.
    If tf_keras changes that name this returns False and the cell is simply traced in full."""
    return getattr(tf.compat.v1.get_default_graph(), "name", None) == f"{layer.name}_scratch_graph"


@keras.utils.register_keras_serializable(package="iac_tf")
class SearchCell(ScopedLayer):
    """Continuous IAC: four nodes over 14 partial-channel mixed edges, weighted by alpha and beta.

    ``input0`` (upsampled decoder features) and ``input1`` (encoder skip) are each mapped to C
    channels (ReLU, 1x1 conv, BN); node ``j`` is ``x_j = sum_{i<j} Psi_ij * f_PC_ij(x_i)``
    (eq. (5), Algorithm 2 lines 1-5) over every earlier state, each edge a :class:`MixedOp`
    weighted by ``phi = softmax(alpha_edge)`` (eq. (1)-(3)); Psi comes from beta by
    :class:`PsiEdgeNorm` (eq. (4) or (6)-(10)). The four nodes are concatenated and a 1x1
    convolution maps them to ``out_channels``, the width of the concatenation the cell replaces.

    alpha and beta come in as inputs (from :class:`ArchitectureParameters`), so the same
    architecture drives the cell of every U-Net level while each cell has its own weights omega.
    Under ``mixed_float16`` the cell computes in float16, but softmax(alpha) and Psi in float32.

    Args:
        out_channels: output channels (the replaced concatenation's ``Cu + Cs``).
        C: channels of the cell's internal states.
        K: partial-channel divisor (``C % K == 0``; 1 = plain DARTS).
        edge_norm: ``"tan"`` (eq. (6)-(10)) or ``"softmax"`` (eq. (4)).
        steps: intermediate nodes (4 in the paper: 14 edges).
        implementation: ``"fused"`` (default; our choice) evaluates the same eq. (2)-(5) with
            the ops grouped by the state they read (:mod:`iac_tf.search.fused_cell`);
            ``"reference"`` evaluates them edge by edge through the ``MixedOp`` layers. Both
            use the same weights; a symbolic (tensor) ``training`` flag uses the reference path.
        input0_upsampling: ``(sh, sw)`` where ``input0`` arrives *before* the U-Net's nearest
            ``UpSampling2D((sh, sw))`` (``H/sh x W/sw``; set by `iac_tf.implant` when the cell
            absorbs that layer). The cell computes what it computes on the upsampled tensor:
            the reference path upsamples first; the fused path runs the preprocessing ReLU and
            1x1 convolution at the low resolution (both act pixel by pixel) and upsamples their
            C-channel result, so it keeps a 1/(sh*sw) size input for the filter gradient.

    Call arguments:
        inputs: ``[input0, input1, alpha, beta]`` with ``input0`` ``(B, H, W, Cu)``, ``input1``
            ``(B, H, W, Cs)``, ``alpha`` ``(14, 8)``, ``beta`` ``(14,)``.
        training: BatchNorm mode (search BNs have no affine parameters).
        project: ``False`` returns the concatenated nodes ``(B, H, W, steps * C)``, the input of
            the output 1x1 convolution (for `iac_tf.implant.ComposedConv`).
        Returns ``(B, H, W, out_channels)``.

    Example:
        >>> arch = ArchitectureParameters()
        >>> alpha, beta = arch(up)
        >>> y = SearchCell(out_channels=128)([up, skip, alpha, beta])
    """

    def __init__(self, out_channels, C=16, K=4, edge_norm="tan", steps=DEFAULT_STEPS,
                 implementation="fused", input0_upsampling=None, **kwargs):
        kwargs["autocast"] = False  # alpha/beta must reach the softmax and Psi as float32
        super().__init__(**kwargs)
        self.out_channels = check_positive_int("SearchCell", "out_channels", out_channels)
        self.C = check_positive_int("SearchCell", "C", C)
        self.K = check_positive_int("SearchCell", "K", K)
        check_partial_channels(C, K)
        self.edge_norm = check_mode(edge_norm)
        self.steps = check_positive_int("SearchCell", "steps", steps)
        self.num_edges = num_edges(steps)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"SearchCell: implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
            )
        self.implementation = implementation
        self.input0_upsampling = check_upsampling(self.name, input0_upsampling)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 4:
            raise ValueError(f"{self.name}: expects [input0, input1, alpha, beta], got {input_shape}")
        shape0, shape1, alpha_shape, beta_shape = (tf.TensorShape(s) for s in input_shape)
        check_cell_inputs(self.name, shape0, shape1, self.input0_upsampling or (1, 1))
        if alpha_shape.as_list() != [self.num_edges, len(PRIMITIVES)]:
            raise ValueError(
                f"{self.name}: alpha must be ({self.num_edges}, {len(PRIMITIVES)}), got {alpha_shape}"
            )
        if beta_shape.as_list() != [self.num_edges]:
            raise ValueError(f"{self.name}: beta must be ({self.num_edges},), got {beta_shape}")
        build_io_layers(self, shape0, shape1, affine=False)
        self.psi_norm = PsiEdgeNorm(self.edge_norm, self.steps, name="psi")
        state = shape1[:-1].concatenate([self.C])
        self.edges = []
        for e, (j, i) in enumerate(edge_list(self.steps)):
            edge = MixedOp(self.C, self.K, name=f"edge{e}_x{i}_to_node{j}", dtype=self.dtype_policy)
            build_sublayer(edge, [state, tf.TensorShape([len(PRIMITIVES)])])
            self.edges.append(edge)
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None, project=True):
        input0, input1, alpha, beta = inputs
        if _keras_shape_inference(self):
            # Keras calls a layer in a scratch graph when it is applied to symbolic inputs, only
            # to read the output's shape and dtype; the cell's ~2900 ops (about 1 s to trace per
            # cell) would be thrown away. The sublayers are built in build().
            channels = self.out_channels if project else self.steps * self.C
            out = tf.zeros(tf.concat([tf.shape(input1)[:-1], [channels]], axis=0), self.compute_dtype)
            out.set_shape(input1.shape[:-1].concatenate([channels]))
            return out
        phi = tf.nn.softmax(tf.cast(alpha, tf.float32), axis=-1)  # eq. (1), float32
        psi32 = self.psi_norm(beta)  # eq. (4) / (6)-(10), float32
        mode = static_training(training)
        fused = self.implementation == "fused" and mode is not None
        input0 = tf.cast(input0, self.compute_dtype)
        upsampling = self.input0_upsampling
        if upsampling is not None and not fused:  # the definition: upsample, then preprocess
            input0, upsampling = upsample_nearest(input0, upsampling), None
        states = [
            self.preprocess0(input0, training=training, upsampling=upsampling),
            self.preprocess1(tf.cast(input1, self.compute_dtype), training=training),
        ]
        if fused:
            nodes = fused_nodes(self, states, phi, psi32, mode)
        else:
            nodes = self._reference_nodes(states, phi, tf.cast(psi32, self.compute_dtype), training)
        hidden = tf.concat(nodes, axis=-1)
        return self.output_conv(hidden) if project else hidden

    def _reference_nodes(self, states, phi, psi, training):
        """Eq. (5) edge by edge through the MixedOp layers: the straightforward definition."""
        for start, end in node_edge_slices(self.steps):
            node = 0.0
            for e in range(start, end):  # eq. (5): x_j = sum_i Psi_ij * f_ij(x_i)
                x_i = states[e - start]
                node = node + psi[e] * self.edges[e]([x_i, phi[e]], training=training)
            states.append(node)
        return states[2:]

    def compute_output_shape(self, input_shape):
        return output_shape(self, input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "out_channels": self.out_channels,
                "C": self.C,
                "K": self.K,
                "edge_norm": self.edge_norm,
                "steps": self.steps,
                "implementation": self.implementation,
                "input0_upsampling": None if self.input0_upsampling is None else list(self.input0_upsampling),
            }
        )
        config.pop("autocast", None)
        return config
