"""The paper's comparison methods (Section V-A): other ways of improving the skip connections of
the same frozen U-Net, each an implantable module (see `iac_tf.implant`).

    from iac_tf.comparisons import METHODS, build_comparison_unet
    model = build_comparison_unet(unet, "attention")     # or residual_attention, nested
"""

from iac_tf.comparisons.attention import AttentionGate
from iac_tf.comparisons.nested import NestedSkip
from iac_tf.comparisons.registry import METHODS, build_comparison_unet, make_module_factory
from iac_tf.comparisons.residual_attention import AttentionAugmentation

__all__ = [
    "METHODS",
    "AttentionAugmentation",
    "AttentionGate",
    "NestedSkip",
    "build_comparison_unet",
    "make_module_factory",
]
