"""The comparison methods of the paper (Section V-A, Table II): name -> ``make_module`` factory.

Each entry turns a U-Net's skip connections (`iac_tf.implant.find_skip_connections`) into a
``make_module(level, up_shape, skip_shape)`` for `iac_tf.implant.implant`. A factory call
returns a fresh ``make_module`` (the nested one remembers the deeper skips of one implant).
Adding a method is adding a row to ``METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from iac_tf.comparisons.attention import AttentionGate
from iac_tf.comparisons.nested import NestedSkip
from iac_tf.comparisons.residual_attention import AttentionAugmentation
from iac_tf.implant import find_skip_connections, implant
from iac_tf.implant.modules import MakeModule, module_name


def attention_factory(skips: Sequence[Any], **options) -> MakeModule:
    """Attention U-Net gates (Oktay et al. 2018), one per skip."""
    up_index = {s.level: s.up_index for s in skips}

    def make_module(level, up_shape, skip_shape):
        return AttentionGate(up_index=up_index[level], name=module_name("attention", level), **options)

    return make_module


def residual_attention_factory(skips: Sequence[Any], **options) -> MakeModule:
    """RAUNet attention augmentation modules (Ni et al. 2019), one per skip."""
    up_index = {s.level: s.up_index for s in skips}

    def make_module(level, up_shape, skip_shape):
        return AttentionAugmentation(
            up_index=up_index[level], name=module_name("residual_attention", level), **options)

    return make_module


def nested_factory(skips: Sequence[Any], seen: dict | None = None, **options) -> MakeModule:
    """UNet++ ``X^{i,1}`` nodes (Zhou et al. 2018): the skip of level ``l`` also sees the skip of
    level ``l - 1`` (the next deeper one); the deepest sees the decoder's up-sampled bottleneck.

    `implant` replays the decoder deepest level first, so the deeper skip tensor is known when a
    level's module is called. ``seen`` (level -> skip tensor) is where the modules record the
    skips they receive; pass one to share it with modules of other levels."""
    up_index = {s.level: s.up_index for s in skips}
    seen = {} if seen is None else seen

    def make_module(level, up_shape, skip_shape):
        layer = NestedSkip(up_index=up_index[level], name=module_name("nested", level), **options)

        def module(inputs):
            up, skip = inputs
            seen[level] = skip
            below = seen.get(level - 1)
            return layer([up, skip] if below is None else [up, skip, below])

        return module

    return make_module


METHODS: dict[str, Callable[..., MakeModule]] = {
    "attention": attention_factory,
    "residual_attention": residual_attention_factory,
    "nested": nested_factory,
}


def make_module_factory(method: str, skips: Sequence[Any], **options) -> MakeModule:
    """The ``make_module`` of comparison ``method`` for a U-Net with these ``skips``."""
    if method not in METHODS:
        raise ValueError(f"unknown comparison method {method!r}; choose from {sorted(METHODS)}")
    return METHODS[method](skips, **options)


def build_comparison_unet(unet, method: str, **options):
    """The trained ``unet`` (frozen, see `iac_tf.implant.implant`) with ``method``'s module in
    every skip connection."""
    factory = make_module_factory(method, find_skip_connections(unet), **options)
    return implant(unet, factory, name=f"{unet.name}_{method}")
