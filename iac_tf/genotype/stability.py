"""When has the search decided? The genotype derived after each search epoch (eq. (11)-(12))
often stops changing long before the last epoch. :func:`unchanged_epochs` counts the epochs at
the end of a search whose genotype equals the one before, after the warm-up (whose genotypes
come from untrained alpha, beta); ``stage2.stop_when_stable: N`` stops the search once that
count reaches N. A pure function of the genotypes written so far, so a resumed search stops
where an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Sequence

from iac_tf.genotype.genotype import Genotype


def unchanged_epochs(genotypes: Sequence[Genotype], warmup_epochs: int = 0) -> int:
    """How many of the last epochs (1-based ``genotypes[e - 1]`` of epoch ``e``) after the
    warm-up have the same genotype as the epoch before them. The first epoch after the warm-up
    has no searched predecessor and counts as a change."""
    count = 0
    for epoch in range(len(genotypes), warmup_epochs + 1, -1):
        if genotypes[epoch - 1] != genotypes[epoch - 2]:
            break
        count += 1
    return count


def stable(genotypes: Sequence[Genotype], warmup_epochs: int, patience: int | None) -> bool:
    """``stage2.stop_when_stable``: ``patience`` consecutive unchanged epochs after the warm-up
    (``None``: never stop early)."""
    return patience is not None and unchanged_epochs(genotypes, warmup_epochs) >= patience
