"""Implantation: find a trained U-Net's skip connections and put modules in their place.

    from iac_tf.implant import find_skip_connections, implant, module_name
    skips = find_skip_connections(unet)        # level 0 = deepest skip
    supernet = implant(unet, make_module)      # make_module(level, up_shape, skip_shape) -> module

See ``docs/implant.md`` for a walk-through and ``docs/decisions.md`` (Implantation) for the choices made.
"""

from iac_tf.implant.composed_conv import ComposedConv, composed_output
from iac_tf.implant.discrete_module import DiscreteModule
from iac_tf.implant.freeze import freeze_unet
from iac_tf.implant.modules import module_name, original_concat
from iac_tf.implant.rebuild import ImplantError, implant
from iac_tf.implant.residual import IMPLANT_MODES, ResidualImplant, residual
from iac_tf.implant.skips import NoSkipConnectionsError, SkipConnection, find_skip_connections

__all__ = [
    "ComposedConv",
    "composed_output",
    "DiscreteModule",
    "IMPLANT_MODES",
    "ImplantError",
    "NoSkipConnectionsError",
    "SkipConnection",
    "find_skip_connections",
    "freeze_unet",
    "implant",
    "module_name",
    "original_concat",
    "residual",
    "ResidualImplant",
]
