"""The modules :func:`iac_tf.implant.implant` puts at a skip connection around an IAC cell: the
base both stages share (`CellModule`) and Stage III's (`DiscreteModule`, ``replace`` mode)."""

from __future__ import annotations

from typing import Any

from iac_tf.implant.composed_conv import can_compose_output
from iac_tf.implant.upsampling import nearest_upsampling


class CellModule:
    """An IAC cell at a skip connection that may absorb the layers around it (`implant`):

    * ``absorb_input``: a nearest ``UpSampling2D`` (channels last) before ``up``; the cell then
      gets its input and preprocesses at the low resolution (``fuse_upsampling``;
      ``cell.input0_upsampling``);
    * ``absorb`` (subclasses): the ``Conv2D`` after the cell, composed with the cell's output
      convolution where that saves FLOPs (``fuse_output_conv``).

    Exposes the cell's ``output_conv`` (the residual mode's zero initialisation).
    """

    def __init__(self, cell: Any, fuse_upsampling: bool = True, fuse_output_conv: bool = True):
        self.cell = cell
        self.fuse_upsampling = fuse_upsampling
        self.fuse_output_conv = fuse_output_conv

    @property
    def output_conv(self):
        return getattr(self.cell, "output_conv", None)

    def absorb_input(self, layer) -> bool:
        size = nearest_upsampling(layer) if self.fuse_upsampling else None
        if size is None:
            return False
        self.cell.input0_upsampling = size
        return True


class DiscreteModule(CellModule):
    """Stage III's module for a :class:`~iac_tf.genotype.DiscreteCell` ``cell`` (not yet built):
    the absorbed ``Conv2D`` becomes the cell's own (``cell.absorbed``), so the cell computes that
    layer's output and is what the model holds and saves."""

    def __call__(self, inputs):
        return self.cell(inputs)

    def absorb(self, layer):
        if not (self.fuse_output_conv and can_compose_output(self.cell, layer)):
            return None
        self.cell.absorb_conv(layer)
        return self.cell
