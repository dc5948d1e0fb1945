"""``build_unet``: any row of the backbone table -> a functional U-Net with a sigmoid output."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

from iac_tf._keras import keras
from iac_tf.unets.decoder import build_decoder, center_block
from iac_tf.unets.features import spatial_size
from iac_tf.unets.registry import get_backbone

_CONCAT_RE = re.compile(r"decoder_stage(\d+)_concat")


def _positive_int(value) -> bool:
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value > 0
    )


def _check_input_shape(input_shape, reduction: int, backbone: str) -> tuple:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(_positive_int(d) for d in shape):
        raise ValueError(
            f"input_shape must be (H, W, C) of positive ints, got {input_shape!r}"
        )
    shape = tuple(int(d) for d in shape)
    height, width, _ = shape
    if height % reduction or width % reduction:
        raise ValueError(
            f"backbone {backbone!r} downsamples by {reduction}: input height and width must be "
            f"divisible by {reduction}, got {height}x{width}"
        )
    return shape


def build_unet(
    backbone: str,
    input_shape: Sequence[int] = (128, 128, 1),
    classes: int = 1,
    encoder_weights=None,
    decoder_filters: Sequence[int] | None = None,
    name: str | None = None,
    activation: str = "sigmoid",
    **backbone_kwargs,
) -> keras.Model:
    """Build a U-Net of the paper's zoo (Section III-A) as a functional Keras model.

    Args:
        backbone: one of :data:`iac_tf.unets.BACKBONES`.
        input_shape: ``(H, W, C)``; ``H`` and ``W`` divisible by 32 (16 for ``"base"``), any
            number of channels ``C`` (1-4 for MRI/CT/BraTS).
        classes: ``N``, the number of binary output channels (one sigmoid per class).
        encoder_weights: ``None`` (random init), ``"imagenet"`` or a path to a weights file of
            the 3-channel ``include_top=False`` encoder. With ``C != 3`` the 3-channel weights
            are adapted to ``C`` channels by averaging the first layer's kernels over RGB
            (scaled by ``3 / C``) and repeating them ``C`` times; the graph is the same as
            without weights (see :mod:`iac_tf.unets.channels`). ``"base"`` has no weights.
        decoder_filters: filters per decoder stage, deepest first. Default: segmentation_models'
            ``(256, 128, 64, 32, 16)`` (five stages); for ``"base"`` the mirrored encoder
            filters ``(512, 256, 128, 64)`` (four stages).
        name: model name, default ``"unet_{backbone}"``.
        activation: the head's function: ``sigmoid`` (one per channel, the paper's) or
            ``softmax`` over the channels (then ``classes`` counts the background channel too).
        **backbone_kwargs: encoder options: ``base_filters`` / ``use_batchnorm`` for ``"base"``,
            ``alpha`` / ``minimalistic`` for ``"mobilenetv3_large"``; anything else is a
            ``ValueError`` (segmentation_models would raise a bare ``TypeError``).

    Returns:
        A ``keras.Model`` mapping ``(B, H, W, C)`` to ``(B, H, W, N)`` float32 probabilities.
        Skip connection ``i`` (``i = 0`` deepest) is the layer ``decoder_stage{i}_concat``, a
        ``Concatenate`` of ``[upsampled decoder tensor, encoder tensor]``; see
        :func:`skip_layer_names`. The head (``final_conv``, ``sigmoid``) is float32 under any
        mixed-precision policy. Keras-applications encoders are built without their ImageNet
        preprocessing layers (inputs are z-scored; see :mod:`iac_tf.unets.encoders`).

    Freezing: use ``model.trainable = False`` (or on any sub-range of layers); it freezes
    BatchNorm too, and in Keras 2 a non-trainable BatchNorm also runs in inference mode.
    segmentation_models' ``encoder_freeze=True`` leaves BatchNorm layers trainable, so it is not
    offered here.

    Example:
        >>> model = build_unet("resnet50", input_shape=(128, 128, 4), classes=3)
        >>> skip_layer_names(model)[0]
        'decoder_stage0_concat'
    """
    spec = get_backbone(backbone)
    shape = _check_input_shape(input_shape, spec.reduction, backbone)
    if not _positive_int(classes):
        raise ValueError(f"classes must be a positive int, got {classes!r}")
    classes = int(classes)
    unknown = sorted(set(backbone_kwargs) - set(spec.encoder.kwargs))
    if unknown:
        allowed = ", ".join(spec.encoder.kwargs) or "none"
        raise ValueError(
            f"unknown keyword argument(s) {unknown} for backbone {backbone!r} (accepted: {allowed})"
        )

    encoder = spec.encoder(shape, encoder_weights, **backbone_kwargs)
    bottleneck = encoder.output
    expected = (shape[0] // spec.reduction, shape[1] // spec.reduction)
    if spatial_size(bottleneck) != expected:
        raise ValueError(
            f"{backbone} encoder output is {spatial_size(bottleneck)}, not {expected}"
        )
    skips = [locate(encoder) for locate in spec.skips]
    for i, skip in enumerate(skips):
        size = (expected[0] * 2 ** (i + 1), expected[1] * 2 ** (i + 1))
        if spatial_size(skip) != size:  # a table error, never a user error
            raise ValueError(
                f"{backbone} skip {i} is {spatial_size(skip)}, expected {size}"
            )

    n_stages = spec.reduction.bit_length() - 1
    filters = (
        decoder_filters or spec.decoder_filters or [int(s.shape[-1]) for s in skips]
    )
    if len(filters) != n_stages:
        raise ValueError(
            f"backbone {backbone!r} needs {n_stages} decoder_filters (one per upsampling stage), "
            f"got {tuple(filters)}"
        )
    x = bottleneck
    if spec.center_filters:
        x = center_block(x, spec.center_filters)
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
    outputs = build_decoder(x, skips, filters, classes, activation=activation)
    return keras.Model(encoder.input, outputs, name=name or f"unet_{backbone}")


def skip_layer_names(model: keras.Model) -> list[str]:
    """Names of the zoo's skip ``Concatenate`` layers, deepest first
    (``["decoder_stage0_concat", ...]``)."""
    found = [
        (int(match.group(1)), layer.name)
        for layer in model.layers
        if (match := _CONCAT_RE.fullmatch(layer.name))
        and isinstance(layer, keras.layers.Concatenate)
    ]
    return [layer_name for _, layer_name in sorted(found)]


__all__ = ["build_unet", "skip_layer_names"]
