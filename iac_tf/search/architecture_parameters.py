"""The architecture parameters alpha (operation choice) and beta (edge choice) of the IAC."""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer
from iac_tf.search.checks import check_positive_int
from iac_tf.search.operations import PRIMITIVES
from iac_tf.search.topology import DEFAULT_STEPS, num_edges

ARCH_INITS = ("ones", "normal")
NORMAL_INIT_SCALE = 1e-3  # PC-DARTS: 1e-3 * randn
NUM_EDGES = num_edges(DEFAULT_STEPS)  # 14
NUM_OPS = len(PRIMITIVES)  # 8


@keras.utils.register_keras_serializable(package="iac_tf")
class ArchitectureParameters(ScopedLayer):
    """Owns alpha ``(num_edges, num_ops)`` and beta ``(num_edges,)``, shared by every cell.

    The variables are float32 under any mixed-precision policy and are exposed as the attributes
    ``alpha`` and ``beta``, so a trainer can tell them apart from the cell weights omega by
    identity (eq. (13)-(14) update them with separate optimisers). Calling the layer on any tensor
    returns ``(alpha, beta)`` as tensors; the input is ignored and only places the layer in a
    functional graph, so that one ``(alpha, beta)`` pair can feed the SearchCell of every level.

    Args:
        num_edges: edges per cell (14 for 4 intermediate nodes).
        num_ops: operations per edge (``len(PRIMITIVES)`` = 8).
        init: ``"ones"`` (the paper, Algorithm 1 line 2) or ``"normal"`` (PC-DARTS'
            ``1e-3 * N(0, 1)``).
        seed: optional seed for ``init="normal"``.

    Call arguments:
        inputs: any tensor (ignored). Returns ``(alpha, beta)``, float32.
    """

    def __init__(self, num_edges=NUM_EDGES, num_ops=NUM_OPS, init="ones", seed=None,
                 **kwargs):
        kwargs["dtype"] = "float32"
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        check_positive_int("ArchitectureParameters", "num_edges", num_edges)
        check_positive_int("ArchitectureParameters", "num_ops", num_ops)
        if init not in ARCH_INITS:
            raise ValueError(f"ArchitectureParameters: init must be one of {ARCH_INITS}, got {init!r}")
        self.num_edges = num_edges
        self.num_ops = num_ops
        self.init = init
        self.seed = seed
        self.alpha = self.add_weight(
            name="alpha", shape=(num_edges, num_ops), dtype=tf.float32,
            initializer=self._initializer(0), trainable=True,
        )
        self.beta = self.add_weight(
            name="beta", shape=(num_edges,), dtype=tf.float32,
            initializer=self._initializer(1), trainable=True,
        )

    def _initializer(self, offset):
        if self.init == "ones":
            return keras.initializers.Ones()
        seed = None if self.seed is None else int(self.seed) + offset
        return keras.initializers.RandomNormal(stddev=NORMAL_INIT_SCALE, seed=seed)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):  # training: accepted, unused
        del inputs  # only anchors the layer in a functional graph
        return tf.identity(self.alpha), tf.identity(self.beta)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([self.num_edges, self.num_ops]), tf.TensorShape([self.num_edges])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_edges": self.num_edges, "num_ops": self.num_ops, "init": self.init, "seed": self.seed}
        )
        config.pop("autocast", None)
        return config
