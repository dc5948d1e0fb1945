"""What :func:`iac_tf.implant.implant` puts at a skip connection in Stage III (``replace`` mode):
the discrete cell of a genotype, absorbing the U-Net layers around it where they fit."""

from __future__ import annotations

from typing import Any

from iac_tf.implant.composed_conv import can_compose_output
from iac_tf.implant.upsampling import nearest_upsampling


class DiscreteModule:
    """`iac_tf.implant.implant`'s module for a :class:`~iac_tf.genotype.DiscreteCell` ``cell``
    (not yet built), offering it the layers around it as `SearchModule` does for Stage II:

    * ``absorb_input``: a nearest ``UpSampling2D`` before ``up`` (``fuse_upsampling``); the cell
      gets the low-resolution tensor (``cell.input0_upsampling``);
    * ``absorb``: the ``Conv2D`` after the cell, composed with its output convolution where
      that saves FLOPs (``fuse_output_conv``; ``cell.absorbed``).

    The cell then computes the same function; it is what the model holds and saves.
    """

    def __init__(self, cell: Any, fuse_upsampling: bool = True, fuse_output_conv: bool = True):
        self.cell = cell
        self.fuse_upsampling = fuse_upsampling
        self.fuse_output_conv = fuse_output_conv

    @property
    def output_conv(self):
        return getattr(self.cell, "output_conv", None)

    def __call__(self, inputs):
        return self.cell(inputs)

    def absorb_input(self, layer) -> bool:
        size = nearest_upsampling(layer) if self.fuse_upsampling else None
        if size is None:
            return False
        self.cell.input0_upsampling = size
        return True

    def absorb(self, layer):
        if not (self.fuse_output_conv and can_compose_output(self.cell, layer)):
            return None
        self.cell.absorb_conv(layer)
        return self.cell
