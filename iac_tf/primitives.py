"""The names of the search space's candidate operations (paper, Section III-B), as pure data.

The genotype record (:mod:`iac_tf.genotype.genotype`) validates against these names without
TensorFlow; the Keras operations that implement them live in :mod:`iac_tf.search.operations`,
which imports this list (as PC-DARTS' ``operations.py`` imports ``genotypes.PRIMITIVES``).
"""

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

__all__ = ["PRIMITIVES"]
