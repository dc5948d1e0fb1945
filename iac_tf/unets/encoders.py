"""Encoder builders: ``make(input_shape, weights, **kwargs) -> keras.Model``.

Each returns a functional encoder whose output is the bottleneck (stride 32) and whose
intermediate layers the table's locators (:mod:`iac_tf.unets.features`) tap for the skips.

* :func:`sm_encoder` — segmentation_models' backbone factory (VGG16, ResNet50), exactly the
  encoder ``sm.Unet`` builds (same layer names, same feature layers).
* :func:`application_encoder` — a ``keras.applications`` model (MobileNetV3Large,
  EfficientNetV2S/M, ConvNeXtTiny/Base) with ``include_top=False`` and
  ``include_preprocessing=False``: those models otherwise start with fixed ImageNet
  rescaling/normalisation layers (``x / 127.5 - 1`` for MobileNetV3, ``x / 128 - 1`` for
  EfficientNetV2, ImageNet mean/std for ConvNeXt) that expect 0-255 RGB pixels. Our inputs are
  z-scored per volume (zero mean, unit variance), already in the range those layers produce,
  so they are left out. (A user fine-tuning from ImageNet weights gets inputs of the right scale;
  the intensity statistics of MRI/CT differ from ImageNet's in any case.)

Inputs with ``C != 3`` channels and ImageNet weights go through
:func:`iac_tf.unets.channels.build_with_channels`.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings

from iac_tf._keras import import_segmentation_models, keras
from iac_tf.unets.channels import build_with_channels


@contextlib.contextmanager
def _quiet_channel_warning():
    """Keras warns for any channel count but 1 or 3; 1-4 channels are this project's normal."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="This model usually expects 1 or 3 input"
        )
        yield


def _sm_submodules() -> dict:
    """The Keras submodules segmentation_models injects into its builders."""
    return {
        "backend": keras.backend,
        "layers": keras.layers,
        "models": keras.models,
        "utils": keras.utils,
    }


def sm_encoder(sm_name: str):
    """Encoder builder for segmentation_models' backbone ``sm_name`` (no extra kwargs)."""

    def make(input_shape, weights=None):
        sm = import_segmentation_models()

        def build(shape, w):
            with _quiet_channel_warning():
                return sm.Backbones.get_backbone(
                    sm_name,
                    input_shape=shape,
                    weights=w,
                    include_top=False,
                    **_sm_submodules(),
                )

        return build_with_channels(build, input_shape, weights)

    make.description = f"segmentation_models {sm_name}"
    make.kwargs = ()
    return make


def application_encoder(constructor_name: str, kwargs: tuple = ()):
    """Encoder builder for ``keras.applications.<constructor_name>``.

    Args:
        constructor_name: e.g. ``"EfficientNetV2S"``.
        kwargs: names of constructor arguments users may pass through ``build_unet``
            (e.g. MobileNetV3's ``alpha``, ``minimalistic``).
    """

    def make(input_shape, weights=None, **options):
        constructor = getattr(keras.applications, constructor_name)
        fixed = {"include_top": False}
        if "include_preprocessing" in inspect.signature(constructor).parameters:
            fixed["include_preprocessing"] = False

        def build(shape, w):
            with _quiet_channel_warning():
                return constructor(input_shape=shape, weights=w, **fixed, **options)

        return build_with_channels(build, input_shape, weights)

    make.description = f"keras.applications.{constructor_name}"
    make.kwargs = tuple(kwargs)
    return make


__all__ = ["application_encoder", "sm_encoder"]
