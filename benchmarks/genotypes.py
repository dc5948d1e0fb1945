"""The genotypes the cost benchmarks (``stage3_cost.py``, ``predict.py``) measure, by name or file.

* ``example``: a mix of operations (sep, dil, pools and two ``skip_connect`` edges), lighter
  than what searches find;
* ``searched``: ``searched_genotype.json`` beside this file, a genotype a search found on real
  data (where it comes from: docs/benchmarks.md, "The genotypes measured");
* ``heaviest``: the heaviest genotype of the search space's usual outcome, in which every edge is
  a 5x5 separable or dilated convolution: every edge ``sep_conv_5x5`` (two ReLU-depthwise-
  pointwise-BN blocks, the heaviest operation; ``dil_conv_5x5`` is one such block).

``--genotype`` takes any of these names or the path of a genotype JSON (``iac_tf.genotype``).
"""

from __future__ import annotations

import json
import pathlib

from iac_tf.genotype import Genotype

HERE = pathlib.Path(__file__).resolve().parent
SEARCHED_FILE = HERE / "searched_genotype.json"

EXAMPLE = Genotype((
    (("sep_conv_3x3", 1), ("skip_connect", 0)),
    (("dil_conv_5x5", 2), ("max_pool_3x3", 0)),
    (("avg_pool_3x3", 3), ("sep_conv_5x5", 1)),
    (("dil_conv_3x3", 4), ("skip_connect", 2)),
))

HEAVIEST = Genotype(tuple(
    (("sep_conv_5x5", j), ("sep_conv_5x5", j + 1)) for j in range(4)))

NAMES = ("example", "searched", "heaviest")


def load(spec: str) -> tuple[str, Genotype]:
    """``(label, genotype)`` of a built-in name (:data:`NAMES`) or a genotype JSON file."""
    if spec == "example":
        return spec, EXAMPLE
    if spec == "heaviest":
        return spec, HEAVIEST
    if spec == "searched":
        return spec, Genotype.from_dict(json.loads(SEARCHED_FILE.read_text()), str(SEARCHED_FILE))
    path = pathlib.Path(spec)
    if not path.is_file():
        raise SystemExit(f"--genotype {spec}: neither one of {', '.join(NAMES)} nor a file")
    return path.stem, Genotype.from_json(path)


def describe(genotype: Genotype) -> str:
    """``sep_conv_5x5 x1, dil_conv_5x5 x2, ...``: how often each operation is chosen."""
    counts: dict[str, int] = {}
    for node in genotype.edges:
        for op, _ in node:
            counts[op] = counts.get(op, 0) + 1
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))
