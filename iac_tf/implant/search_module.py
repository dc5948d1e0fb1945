"""What :func:`iac_tf.implant.implant` puts at a skip connection in Stage II: a search cell
(:class:`~iac_tf.search.SearchCell`) fed by the architecture parameters alpha, beta shared by
every level."""

from __future__ import annotations

from iac_tf.implant.composed_conv import composed_output
from iac_tf.implant.upsampling import nearest_upsampling


class SearchModule:
    """What `iac_tf.implant.implant` calls at a skip connection in Stage II: alpha, beta from
    ``arch`` -> the level's ``SearchCell``. Exposes the cell's ``output_conv`` (the residual
    mode's zero initialisation) and may absorb the layers around the cell (`implant`):

    * ``absorb_input``: a nearest ``UpSampling2D`` (channels last) before ``up``; the cell then
      gets its input and preprocesses at the low resolution (``fuse_upsampling``);
    * ``absorb``: the ``Conv2D`` after the cell, composed with the cell's output convolution
      (`iac_tf.implant.ComposedConv`) where that saves FLOPs (``fuse_output_conv``).
    """

    def __init__(self, arch, cell, fuse_upsampling: bool = True, fuse_output_conv: bool = True):
        self.arch = arch
        self.cell = cell
        self.fuse_upsampling = fuse_upsampling
        self.fuse_output_conv = fuse_output_conv

    @property
    def output_conv(self):
        return getattr(self.cell, "output_conv", None)

    def _cell(self, inputs, project=True):
        alpha, beta = self.arch(inputs[0])
        return self.cell([inputs[0], inputs[1], alpha, beta], project=project)

    def __call__(self, inputs):
        return self._cell(inputs)

    def absorb_input(self, layer) -> bool:
        size = nearest_upsampling(layer) if self.fuse_upsampling else None
        if size is None:
            return False
        self.cell.input0_upsampling = size
        return True

    def absorb(self, layer):
        if not self.fuse_output_conv:
            return None
        return composed_output(self.cell, layer, lambda inputs: self._cell(inputs, project=False))
