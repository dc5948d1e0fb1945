"""The IAC search space: operations, partial-channel mixed op, edge normalisation, cells.

See the paper, Section III-B (eq. (1)-(10)), Algorithm 2 and Fig. 2-4.
"""

from iac_tf.search.architecture_parameters import ArchitectureParameters
from iac_tf.search.channel_shuffle import channel_shuffle
from iac_tf.search.mixed_op import MixedOp
from iac_tf.search.operations import OPS, PRIMITIVES, ReLUConvBN, ReLUSepConvBN, make_op
from iac_tf.search.checks import check_positive_int
from iac_tf.search.psi import EDGE_NORMS, PsiEdgeNorm, check_mode, psi_edge_weights, psi_per_node
from iac_tf.search.search_cell import SearchCell
from iac_tf.search.topology import edge_list, node_edge_slices, num_edges

__all__ = [
    "EDGE_NORMS",
    "OPS",
    "PRIMITIVES",
    "ArchitectureParameters",
    "MixedOp",
    "PsiEdgeNorm",
    "ReLUConvBN",
    "ReLUSepConvBN",
    "SearchCell",
    "channel_shuffle",
    "check_mode",
    "check_positive_int",
    "edge_list",
    "make_op",
    "node_edge_slices",
    "num_edges",
    "psi_edge_weights",
    "psi_per_node",
]
