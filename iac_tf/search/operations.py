"""The candidate operations of an edge: ``PRIMITIVES`` and the ``OPS`` table of factories.

As in DARTS / PC-DARTS (``operations.py``), for stride 1 and resolution-preserving ("same")
padding on NHWC tensors:

* ``none``          -- zeros (no connection)
* ``max_pool_3x3``  -- 3x3 max pooling
* ``avg_pool_3x3``  -- 3x3 average pooling; padding is *excluded* from the mean (TF's "same"
  pooling averages over the valid pixels only, like PyTorch's ``count_include_pad=False``)
* ``skip_connect``  -- identity
* ``sep_conv_kxk``  -- (ReLU, depthwise kxk, pointwise 1x1, BN) applied twice
* ``dil_conv_kxk``  -- ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN

``OPS[name](C, affine)`` returns a fresh Keras layer mapping ``C`` channels to ``C`` channels.
``affine=False`` (search) gives BatchNorms without scale/offset; ``affine=True`` (discrete cell)
gives the usual ones. The BN after pooling during search is added by :class:`MixedOp`, as in DARTS.
"""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer, build_sublayer  # noqa: F401  (build_sublayer: re-exported)
from iac_tf.search.kernels import depthwise_conv
from iac_tf.search.recompute import can_recompute, sep_conv_block
from iac_tf.primitives import PRIMITIVES as _PRIMITIVES

# The operation names (pure data, shared with the genotype record).
PRIMITIVES = _PRIMITIVES

# PyTorch BatchNorm2d defaults (momentum 0.1 there = 0.9 here), as in the reference code.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(affine: bool, name: str | None = None, dtype=None):
    """The BatchNorm used everywhere in a cell (no scale/offset when ``affine`` is False)."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=affine, scale=affine, name=name, dtype=dtype
    )


def upsample_nearest(x, size):
    """Keras' ``UpSampling2D(size, interpolation="nearest")`` (channels last) of ``x``."""
    return keras.backend.resize_images(x, int(size[0]), int(size[1]), "channels_last",
                                       interpolation="nearest")


@keras.utils.register_keras_serializable(package="iac_tf")
class Zero(keras.layers.Layer):
    """The ``none`` operation: a tensor of zeros shaped like the input."""

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):  # training: accepted, unused
        return tf.zeros_like(inputs)


@keras.utils.register_keras_serializable(package="iac_tf")
class Identity(keras.layers.Layer):
    """The ``skip_connect`` operation (stride 1): the input unchanged."""

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):  # training: accepted, unused
        return tf.identity(inputs)


@keras.utils.register_keras_serializable(package="iac_tf")
class ReLUSepConvBN(ScopedLayer):
    """``repeats`` x (ReLU, depthwise kxk (dilated), pointwise 1x1 to ``filters``, BN).

    ``sep_conv_kxk`` is ``repeats=2, dilation_rate=1``; ``dil_conv_kxk`` is ``repeats=1,
    dilation_rate=2``. Convolutions have no bias (the BN follows).

    Args:
        filters: output channels ``C`` of every pointwise convolution.
        kernel_size: depthwise kernel size ``k``.
        dilation_rate: depthwise dilation.
        repeats: how many (ReLU, depthwise, pointwise, BN) blocks.
        affine: BatchNorm with scale/offset.

    Call arguments:
        inputs: ``(B, H, W, C_in)``. Returns ``(B, H, W, filters)``.
    """

    def __init__(self, filters, kernel_size, dilation_rate=1, repeats=1, affine=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.repeats = int(repeats)
        self.affine = bool(affine)

    def build(self, input_shape):
        # flat lists of layers (Keras-format saving walks lists of layers, not lists of tuples)
        self.depthwise, self.pointwise, self.bns = [], [], []
        shape = tf.TensorShape(input_shape)
        for r in range(self.repeats):
            depthwise = keras.layers.DepthwiseConv2D(
                self.kernel_size, padding="same", dilation_rate=self.dilation_rate,
                use_bias=False, name=f"depthwise{r}", dtype=self.dtype_policy,
            )
            pointwise = keras.layers.Conv2D(
                self.filters, 1, use_bias=False, name=f"pointwise{r}", dtype=self.dtype_policy
            )
            bn = batch_norm(self.affine, name=f"bn{r}", dtype=self.dtype_policy)
            build_sublayer(depthwise, shape)
            build_sublayer(pointwise, shape)
            shape = shape[:-1].concatenate([self.filters])
            build_sublayer(bn, shape)
            self.depthwise.append(depthwise)
            self.pointwise.append(pointwise)
            self.bns.append(bn)
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None):
        x = inputs
        recompute = training is True or (training is not None and tf.get_static_value(training) is True)
        for depthwise, pointwise, bn in zip(self.depthwise, self.pointwise, self.bns):
            if recompute and can_recompute(x, bn):  # same block, less memory kept for training
                x = sep_conv_block(x, depthwise, pointwise, bn)
            else:
                x = bn(pointwise(self._depthwise(depthwise, tf.nn.relu(x))), training=training)
        return x

    def _depthwise(self, layer, x):
        """``layer(x)``; in float32 through `iac_tf.search.kernels.depthwise_conv` (the same
        convolution with hand-written gradients, faster on CPU than TensorFlow's)."""
        if x.dtype != tf.float32:
            return layer(x)
        return depthwise_conv(x, layer.depthwise_kernel, int(layer.dilation_rate[0]))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "dilation_rate": self.dilation_rate,
                "repeats": self.repeats,
                "affine": self.affine,
            }
        )
        return config


@keras.utils.register_keras_serializable(package="iac_tf")
class ReLUConvBN(ScopedLayer):
    """ReLU, 1x1 convolution to ``filters`` channels (no bias), BN: a cell's input preprocessing.

    This is DARTS' ``ReLUConvBN(C_prev, C, 1, 1, 0)`` mapping each cell input to C channels.

    Args:
        filters: output channels ``C``.
        affine: BatchNorm with scale/offset (False during search).

    Call arguments:
        inputs: ``(B, H, W, C_in)``. Returns ``(B, H, W, filters)``.
        upsampling: ``(sh, sw)``: ``inputs`` is ``(B, H/sh, W/sw, C_in)`` and the result is
            that of ``UpSampling2D((sh, sw))`` (nearest) applied to ``inputs`` first. ReLU and
            the 1x1 convolution act pixel by pixel and so commute with the replication; they run
            at the low resolution and only their C-channel result is upsampled before the BN (the
            same values; the BN sees the same tensor).
    """

    def __init__(self, filters, affine=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.affine = bool(affine)

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        self.conv = keras.layers.Conv2D(
            self.filters, 1, use_bias=False, name="conv", dtype=self.dtype_policy
        )
        self.bn = batch_norm(self.affine, name="bn", dtype=self.dtype_policy)
        build_sublayer(self.conv, shape)
        build_sublayer(self.bn, shape[:-1].concatenate([self.filters]))
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert  # plain Python loops over static structure
    def call(self, inputs, training=None, upsampling=None):
        x = self.conv(tf.nn.relu(inputs))
        if upsampling is not None:
            x = upsample_nearest(x, upsampling)
        return self.bn(x, training=training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "affine": self.affine})
        return config


def _pool(kind):
    layer = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
    return lambda C, affine, **kw: layer(pool_size=3, strides=1, padding="same", **kw)


OPS = {
    "none": lambda C, affine, **kw: Zero(**kw),
    "max_pool_3x3": _pool("max"),
    "avg_pool_3x3": _pool("avg"),
    "skip_connect": lambda C, affine, **kw: Identity(**kw),
    "sep_conv_3x3": lambda C, affine, **kw: ReLUSepConvBN(C, 3, 1, 2, affine, **kw),
    "sep_conv_5x5": lambda C, affine, **kw: ReLUSepConvBN(C, 5, 1, 2, affine, **kw),
    "dil_conv_3x3": lambda C, affine, **kw: ReLUSepConvBN(C, 3, 2, 1, affine, **kw),
    "dil_conv_5x5": lambda C, affine, **kw: ReLUSepConvBN(C, 5, 2, 1, affine, **kw),
}
assert tuple(OPS) == PRIMITIVES  # one table, one order


def make_op(op_name: str, C: int, affine: bool, **layer_kwargs):
    """``OPS[op_name](C, affine, **layer_kwargs)`` with a clear error for an unknown name."""
    if op_name not in OPS:
        raise ValueError(f"unknown operation {op_name!r}; known: {', '.join(PRIMITIVES)}")
    return OPS[op_name](C, affine, **layer_kwargs)
