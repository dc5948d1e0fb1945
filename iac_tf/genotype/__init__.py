"""Genotypes of the Implantable Adaptive Cell: the record, its derivation, JSON, drawings and
the discrete cell built from it (Stage III). Depends on :mod:`iac_tf.search`, never the reverse."""

from iac_tf.genotype.derive import derive_genotype, edge_strengths
from iac_tf.genotype.discrete_cell import DiscreteCell
from iac_tf.genotype.genotype import FORMAT, FORMAT_VERSION, Genotype, GenotypeError, as_genotype

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DiscreteCell",
    "Genotype",
    "GenotypeError",
    "as_genotype",
    "derive_genotype",
    "edge_strengths",
]
