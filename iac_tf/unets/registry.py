"""The backbone table: each backbone's encoder builder and skip feature locators.

One row per backbone of the paper (Section III-A, Table I). Adding a backbone is adding a row;
:func:`iac_tf.unets.build_unet` is the one code path that turns any row into a U-Net.

Skips are listed deepest first; skip ``i`` feeds ``decoder_stage{i}_concat``. For the seven
ImageNet-shaped encoders the bottleneck is the encoder output at stride 32 and the skips sit at
strides 16, 8, 4, 2 (segmentation_models' layout, five decoder stages, the last without a skip);
the plain U-Net has its bottleneck at stride 16 and skips at 8, 4, 2, 1 (four stages).

===================  ==================================  ======================================
backbone             encoder                             skips (deepest first)
===================  ==================================  ======================================
base                 plain U-Net, 64..1024 filters       strides 8, 4, 2, 1
vgg16                segmentation_models vgg16           block5_conv3 ... block2_conv2 (16..2)
resnet50             segmentation_models resnet50        stage4_unit1_relu1 ... relu0 (16..2)
mobilenetv3_large    keras.applications MobileNetV3Large strides 16, 8, 4, 2
efficientnetv2_s/m   keras.applications EfficientNetV2   strides 16, 8, 4, 2
convnext_tiny/base   keras.applications ConvNeXt         strides 16, 8, 4 + conv stem (stride 2)
===================  ==================================  ======================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iac_tf.unets.base_unet import plain_unet_encoder
from iac_tf.unets.encoders import application_encoder, sm_encoder
from iac_tf.unets.features import Locator, at_stride, conv_stem, named

SM_DECODER_FILTERS = (256, 128, 64, 32, 16)  # segmentation_models' Unet default
SM_STRIDES = (16, 8, 4, 2)


@dataclass(frozen=True)
class Backbone:
    """One row of the backbone table.

    Attributes:
        encoder: ``make(input_shape, weights, **kwargs) -> keras.Model`` whose output is the
            bottleneck; ``encoder.kwargs`` names the keyword arguments it accepts.
        skips: one locator per skip connection, deepest first.
        reduction: the bottleneck's stride; input sides must be divisible by it.
        decoder_filters: default filters per decoder stage; ``None`` mirrors the encoder (each
            stage gets its skip's channel count, the plain U-Net).
        center_filters: filters of segmentation_models' ``center_block`` (VGG16 only).
    """

    encoder: Callable
    skips: tuple[Locator, ...]
    reduction: int = 32
    decoder_filters: tuple[int, ...] | None = SM_DECODER_FILTERS
    center_filters: int | None = None


def _strides(*strides: int) -> tuple[Locator, ...]:
    return tuple(at_stride(s) for s in strides)


def _convnext(constructor_name: str) -> Backbone:
    # ConvNeXt's patchify stem jumps to stride 4: the stride-2 skip comes from a conv stem.
    return Backbone(
        application_encoder(constructor_name),
        _strides(16, 8, 4) + (conv_stem(stride=2, filters=64),),
    )


# segmentation_models' Backbones.get_feature_layers(name, n=4) (checked in the tests).
_SM_FEATURES = {
    "vgg16": ("block5_conv3", "block4_conv3", "block3_conv3", "block2_conv2"),
    "resnet50": (
        "stage4_unit1_relu1",
        "stage3_unit1_relu1",
        "stage2_unit1_relu1",
        "relu0",
    ),
}

TABLE: dict[str, Backbone] = {
    "base": Backbone(
        plain_unet_encoder, _strides(8, 4, 2, 1), reduction=16, decoder_filters=None
    ),
    "vgg16": Backbone(
        sm_encoder("vgg16"),
        tuple(map(named, _SM_FEATURES["vgg16"])),
        center_filters=512,
    ),
    "resnet50": Backbone(
        sm_encoder("resnet50"), tuple(map(named, _SM_FEATURES["resnet50"]))
    ),
    "mobilenetv3_large": Backbone(
        application_encoder("MobileNetV3Large", kwargs=("alpha", "minimalistic")),
        _strides(*SM_STRIDES),
    ),
    "efficientnetv2_s": Backbone(
        application_encoder("EfficientNetV2S"), _strides(*SM_STRIDES)
    ),
    "efficientnetv2_m": Backbone(
        application_encoder("EfficientNetV2M"), _strides(*SM_STRIDES)
    ),
    "convnext_tiny": _convnext("ConvNeXtTiny"),
    "convnext_base": _convnext("ConvNeXtBase"),
}

BACKBONES: tuple[str, ...] = tuple(TABLE)


def get_backbone(name: str) -> Backbone:
    """The table row of ``name``; a ``ValueError`` listing :data:`BACKBONES` otherwise."""
    try:
        return TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None


__all__ = ["BACKBONES", "SM_DECODER_FILTERS", "TABLE", "Backbone", "get_backbone"]
