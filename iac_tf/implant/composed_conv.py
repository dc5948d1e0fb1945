"""A module's output 1x1 convolution composed with the frozen convolution that consumes it.

In ``replace`` mode each IAC ends in a 1x1 convolution ``P`` (kernel ``W_P``: ``c_in -> c_mid``,
bias ``b_P``) to the concatenation's ``c_mid = C_up + C_skip`` channels, and in most U-Nets the
next layer is a frozen ``k x k`` convolution ``D`` (``W_D``: ``c_mid -> c_out``, bias ``b_D``,
activation ``act``). Both are linear before ``act``, so::

    D(P(h)) = act(conv(h, W) + conv(1, K_b) + b_D)
    W[u, v, i, o]   = sum_c W_P[0, 0, i, c] W_D[u, v, c, o]         (k x k, c_in -> c_out)
    K_b[u, v, 0, o] = sum_c b_P[c] W_D[u, v, c, o]                  (k x k, 1 -> c_out)

``conv(1, K_b)`` is ``D``'s convolution of the constant image ``b_P``: constant inside the image,
different at the borders where ``D`` zero-pads (``same``), so it is computed as one single-channel
convolution of ones with ``D``'s own strides, padding and dilation, not as a bias.

Where ``c_in < c_mid`` this runs ``D``'s ``k x k`` convolution over ``c_in`` instead of ``c_mid``
channels and skips the ``c_mid``-channel tensor altogether: for the paper's cell ``c_in = 4C =
64`` against ``c_mid`` = 192 to 1536 channels in the base U-Net, in the forward pass and in the
input gradient of both passes of a search iteration. The function and its gradients are the same
(another summation order); ``W_P``, ``b_P`` stay the module's variables and ``W_D``, ``b_D`` the
U-Net's: the layer only reads them. `fusion_saves_flops` says where it is cheaper.
"""

from __future__ import annotations

from typing import Any

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer, build_sublayer


def _is_plain_conv2d(layer: Any) -> bool:
    """Exactly ``keras.layers.Conv2D`` (not its subclasses: transposed, depthwise, separable)."""
    return type(layer) is keras.layers.Conv2D


def _ungrouped_channels_last_conv2d(layer: Any) -> bool:
    return (_is_plain_conv2d(layer) and layer.data_format == "channels_last"
            and getattr(layer, "groups", 1) == 1)


def can_compose(inner: Any, outer: Any) -> bool:
    """``inner`` a 1x1, stride-1, linear ``Conv2D`` and ``outer`` any ungrouped ``Conv2D``, both
    channels-last: then ``outer(inner(h))`` is one `ComposedConv`."""
    return (
        _ungrouped_channels_last_conv2d(inner)
        and _ungrouped_channels_last_conv2d(outer)
        and tuple(inner.kernel_size) == (1, 1)
        and tuple(inner.strides) == (1, 1)
        and inner.activation is keras.activations.linear
    )


def fusion_saves_flops(c_in: int, c_mid: int, c_out: int, kernel_size, strides) -> bool:
    """Multiply-adds per input pixel: ``P`` then ``D`` against the composed convolution."""
    taps = int(kernel_size[0]) * int(kernel_size[1])
    per_output = 1.0 / (int(strides[0]) * int(strides[1]))
    separate = c_in * c_mid + per_output * taps * c_mid * c_out
    composed = per_output * taps * c_in * c_out
    return composed < separate


@keras.utils.register_keras_serializable(package="iac_tf")
class ComposedConv(ScopedLayer):
    """``outer(inner(h))`` for a 1x1 convolution ``inner`` and a convolution ``outer``, computed
    as one convolution with the composed kernel (module docstring).

    Args:
        inner: the 1x1 ``Conv2D`` (an IAC's ``output_conv``); its variables stay its own.
        outer: the ``Conv2D`` that consumed ``inner``'s output (a frozen U-Net layer).

    Call arguments:
        inputs: ``(B, H, W, c_in)``, the input of ``inner``. Returns ``outer(inner(inputs))``.
    """

    def __init__(self, inner, outer, **kwargs):
        super().__init__(**kwargs)
        if isinstance(inner, dict):
            inner = keras.layers.deserialize(inner)
        if isinstance(outer, dict):
            outer = keras.layers.deserialize(outer)
        if not can_compose(inner, outer):
            raise ValueError(
                f"{self.name}: needs a 1x1, stride-1, linear Conv2D followed by an ungrouped Conv2D "
                f"(channels last), got {type(inner).__name__} {getattr(inner, 'name', '')!r} and "
                f"{type(outer).__name__} {getattr(outer, 'name', '')!r}"
            )
        self.inner = inner
        self.outer = outer

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if not self.inner.built:
            build_sublayer(self.inner, shape)
        if not self.outer.built:
            build_sublayer(self.outer, shape[:-1].concatenate([self.inner.filters]))
        super().build(input_shape)

    def call(self, inputs):
        return composed_conv(inputs, self.inner, self.outer)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return self.outer.compute_output_shape(shape[:-1].concatenate([self.inner.filters]))

    def get_config(self):
        config = super().get_config()
        config.update({"inner": keras.layers.serialize(self.inner),
                       "outer": keras.layers.serialize(self.outer)})
        return config


def _conv(outer: Any, x, kernel):
    """``outer``'s convolution of ``x`` with ``kernel``. ``tf.nn.convolution`` (as Keras' own
    Conv2D) runs a dilated convolution through space-to-batch, whose gradients exist on every
    CPU; a dilated ``tf.nn.conv2d`` has no input gradient where oneDNN is off (Eigen kernels)."""
    return tf.nn.convolution(x, kernel, strides=list(outer.strides),
                             padding=outer.padding.upper(), dilations=list(outer.dilation_rate))


def composed_kernel(inner: Any, outer: Any):
    """``W`` of the module docstring, ``(k, k, c_in, c_out)`` in float32."""
    w_p = tf.cast(inner.kernel[0, 0], tf.float32)  # (c_in, c_mid)
    return tf.einsum("ic,uvco->uvio", w_p, tf.cast(outer.kernel, tf.float32))


def composed_conv(inputs, inner: Any, outer: Any):
    """``outer(inner(inputs))`` as one convolution with the composed kernel plus the border term
    of ``inner``'s bias (module docstring); ``inner`` and ``outer`` are only read."""
    dtype = inputs.dtype
    y = _conv(outer, inputs, tf.cast(composed_kernel(inner, outer), dtype))
    if inner.use_bias:
        w_d = tf.cast(outer.kernel, tf.float32)
        k_b = tf.einsum("c,uvco->uvo", tf.cast(inner.bias, tf.float32), w_d)[:, :, None, :]
        ones = tf.ones(tf.concat([[1], tf.shape(inputs)[1:3], [1]], axis=0), dtype)
        y = y + _conv(outer, ones, tf.cast(k_b, dtype))  # (1, H', W', c_out), broadcast over B
    if outer.use_bias:
        y = tf.nn.bias_add(y, tf.cast(outer.bias, dtype))
    return outer.activation(y)


def can_compose_output(module: Any, layer: Any) -> bool:
    """Whether ``layer`` after a module ending in ``output_conv`` (a 1x1 ``Conv2D`` from
    ``module.steps * module.C`` to ``module.out_channels`` channels) may be composed with it:
    ``layer`` a plain ungrouped channels-last ``Conv2D`` and composing saves FLOPs."""
    if not _ungrouped_channels_last_conv2d(layer):
        return False
    c_in, c_mid = int(module.steps) * int(module.C), int(module.out_channels)
    return fusion_saves_flops(c_in, c_mid, int(layer.filters), layer.kernel_size, layer.strides)


def composed_output(module: Any, layer: Any, hidden: Any):
    """``module.absorb(layer)`` for a module ending in ``output_conv`` (built on the first call):
    a callable ``inputs -> layer(output_conv(hidden(inputs)))`` computed by one `ComposedConv`,
    or None where `can_compose_output` says no."""
    if not can_compose_output(module, layer):
        return None

    def call(inputs):
        h = hidden(inputs)  # builds the module, so output_conv exists now
        return ComposedConv(module.output_conv, layer, name=f"{module.name}_composed")(h)

    return call
