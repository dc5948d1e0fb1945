"""The residual implant mode (not in the paper): a module that starts as the U-Net.

In the paper's ``replace`` mode the implanted module's output *replaces* the concatenation the
frozen decoder was trained on, and a randomly initialised cell hands the decoder a random mixture
at the first epoch. In ``residual`` mode the module's output is added to the concatenation::

    out = concat(up, skip) + W_out * module(up, skip)

with ``W_out`` a 1x1 convolution initialised to zero (the "zero convolution" used to attach
trainable branches to frozen networks). At initialisation ``W_out * module(...)`` is exactly 0, so
the implanted U-Net computes bit-identically what the U-Net computed; training moves away from it
only where the loss gradient says so.

Two ways to get ``W_out`` (``projection``):

* ``"output_conv"``: the module's own last 1x1 convolution is ``W_out``; its kernel and bias are
  set to zero. Adds no parameter. Used for the IAC cells (``DiscreteCell`` / ``SearchCell``,
  whose ``output_conv`` maps the concatenated nodes to ``C_up + C_skip`` channels) and for any
  module exposing a zero-able ``output_conv`` attribute.
* ``"conv"``: a separate zero-initialised 1x1 convolution ``W_out`` (``C_up + C_skip`` to
  ``C_up + C_skip`` channels, with bias) is applied to the module's output. Works for any module,
  at the cost of ``(C_up + C_skip)^2 + (C_up + C_skip)`` parameters per level.
* ``"auto"`` (default): ``output_conv`` where the module has one, else ``conv``.

Gradients: with ``W_out = 0`` the gradient reaching the module (and, in the search, alpha/beta)
is ``W_out^T dL/dout = 0``; only ``W_out`` gets a gradient at the first step. After one optimiser
step ``W_out`` is non-zero and the module trains. See docs/decisions.md (Residual implant mode).
"""

from __future__ import annotations

from typing import Any, Sequence

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer, build_sublayer
from iac_tf.implant.modules import MakeModule, module_name

PROJECTIONS = ("auto", "output_conv", "conv")
IMPLANT_MODES = ("replace", "residual")


@keras.utils.register_keras_serializable(package="iac_tf")
class ResidualImplant(ScopedLayer):
    """``concat(up, skip) + W_out(module_out)``, the concatenation in the U-Net's own order.

    Args:
        up_first: ``True`` if the U-Net concatenated ``[up, skip]`` (``SkipConnection.up_index``
            0), ``False`` for ``[skip, up]``.
        projection: ``True`` adds the zero-initialised 1x1 convolution ``W_out``; ``False``
            adds ``module_out`` as it is (the module's own output convolution was zeroed).

    Call arguments:
        inputs: ``[up, skip, module_out]``; ``module_out`` has the concatenation's shape.
    """

    def __init__(self, up_first: bool = True, projection: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.up_first = bool(up_first)
        self.projection = bool(projection)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
            raise ValueError(f"{self.name}: expects [up, skip, module_out], got {input_shape}")
        up, skip, out = (tf.TensorShape(s) for s in input_shape)
        channels = up[-1] + skip[-1]
        if out[-1] != channels:
            raise ValueError(
                f"{self.name}: module output has {out[-1]} channels, the concatenation {channels}"
            )
        if self.projection:
            self.w_out = keras.layers.Conv2D(
                channels, 1, use_bias=True, kernel_initializer="zeros", bias_initializer="zeros",
                name="w_out", dtype=self.dtype_policy,
            )
            build_sublayer(self.w_out, out)
        super().build(input_shape)

    def call(self, inputs):
        up, skip, out = inputs
        concat = tf.concat([up, skip] if self.up_first else [skip, up], axis=-1)
        if self.projection:
            out = self.w_out(out)
        return concat + tf.cast(out, concat.dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"up_first": self.up_first, "projection": self.projection})
        return config


def zero_output_conv(module: Any) -> bool:
    """Set the kernel and bias of ``module.output_conv`` to zero; ``False`` if it has none."""
    conv = getattr(module, "output_conv", None)
    if conv is None or not getattr(conv, "built", False):
        return False
    for weight in conv.weights:
        weight.assign(tf.zeros_like(weight))
    return True


def residual(make_module: MakeModule, skips: Sequence[Any], projection: str = "auto",
             prefix: str = "residual") -> MakeModule:
    """Wrap a ``make_module(level, up_shape, skip_shape)`` factory into the residual mode.

    Each wrapped module computes ``m = module([up, skip])`` and returns
    ``ResidualImplant(...)([up, skip, m])`` named ``module_name(prefix, level)``, so the
    implanted model equals the U-Net at initialisation. Any module `implant` accepts works (a
    Keras layer or a callable on tensors); the comparison modules can use the same wrapper.

    Args:
        make_module: the factory of the replace mode.
        skips: the U-Net's skip connections (`find_skip_connections`), for each level's
            concatenation order.
        projection: ``auto``, ``output_conv`` or ``conv`` (see the module docstring).
        prefix: name prefix of the ``ResidualImplant`` layers.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    up_index = {skip.level: skip.up_index for skip in skips}

    def make_residual(level: int, up_shape: tuple, skip_shape: tuple):
        module = make_module(level, up_shape, skip_shape)

        def wrapped(inputs):
            up, skip = inputs
            out = module([up, skip])
            zeroed = False
            if projection in ("auto", "output_conv"):
                zeroed = zero_output_conv(module)
                if projection == "output_conv" and not zeroed:
                    raise ValueError(
                        f"residual implant at level {level}: the module {module!r} has no built "
                        "output_conv to zero; use projection 'conv' or 'auto'"
                    )
            add = ResidualImplant(up_first=up_index.get(level, 0) == 0, projection=not zeroed,
                                  name=module_name(prefix, level))
            return add([up, skip, out])

        return wrapped

    return make_residual
