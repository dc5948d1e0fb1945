"""Genotypes of the Implantable Adaptive Cell: the record, its derivation, JSON, drawings and
the discrete cell built from it (Stage III). Depends on :mod:`iac_tf.search`, never the reverse.

The record (:class:`Genotype`, its JSON) is pure data and loads without TensorFlow; the
derivation from alpha/beta and :class:`DiscreteCell` (Keras) load on first use.
"""

from iac_tf.genotype.genotype import FORMAT, FORMAT_VERSION, Genotype, GenotypeError, as_genotype

_LAZY = {
    "DiscreteCell": "iac_tf.genotype.discrete_cell",
    "derive_genotype": "iac_tf.genotype.derive",
    "edge_strengths": "iac_tf.genotype.derive",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
