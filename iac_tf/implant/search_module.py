"""What :func:`iac_tf.implant.implant` puts at a skip connection in Stage II: a search cell
(:class:`~iac_tf.search.SearchCell`) fed by the architecture parameters alpha, beta shared by
every level."""

from __future__ import annotations

from iac_tf.implant.composed_conv import composed_output
from iac_tf.implant.discrete_module import CellModule


class SearchModule(CellModule):
    """What `iac_tf.implant.implant` calls at a skip connection in Stage II: alpha, beta from
    ``arch`` -> the level's ``SearchCell``, absorbing the layers around it as `CellModule` says;
    the absorbed ``Conv2D`` is computed by a `iac_tf.implant.ComposedConv` reading the cell's
    output convolution.
    """

    def __init__(self, arch, cell, fuse_upsampling: bool = True, fuse_output_conv: bool = True):
        super().__init__(cell, fuse_upsampling, fuse_output_conv)
        self.arch = arch

    def _cell(self, inputs, project=True):
        alpha, beta = self.arch(inputs[0])
        return self.cell([inputs[0], inputs[1], alpha, beta], project=project)

    def __call__(self, inputs):
        return self._cell(inputs)

    def absorb(self, layer):
        if not self.fuse_output_conv:
            return None
        return composed_output(self.cell, layer, lambda inputs: self._cell(inputs, project=False))
