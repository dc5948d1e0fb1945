"""Genotypes of the Implantable Adaptive Cell: the record, its derivation, JSON and drawings."""

from iac_tf.genotype.derive import derive_genotype, edge_strengths
from iac_tf.genotype.genotype import FORMAT, FORMAT_VERSION, Genotype, GenotypeError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Genotype",
    "GenotypeError",
    "derive_genotype",
    "edge_strengths",
]
