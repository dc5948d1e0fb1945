"""The discrete cell architecture: a small record of the two chosen edges of each node.

``Genotype.edges`` holds, for each intermediate node in order, its two ``(op_name, input_index)``
pairs, with input 0 = ``input0`` (upsampled decoder), 1 = ``input1`` (encoder skip), and ``2 + k``
= intermediate node ``k`` (the DARTS convention). The output of a cell is the concatenation of
all its intermediate nodes. JSON form (``FORMAT`` / ``FORMAT_VERSION``)::

    {"format": "iac_tf.genotype", "version": 1,
     "edges": [[["sep_conv_3x3", 1], ["skip_connect", 0]], ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from iac_tf.errors import UserError
from iac_tf.files import atomic_write_text
from iac_tf.genotype.draw import draw_genotype, genotype_to_dot
from iac_tf.primitives import PRIMITIVES

FORMAT = "iac_tf.genotype"
FORMAT_VERSION = 1
EDGES_PER_NODE = 2


class GenotypeError(UserError):
    """A genotype (or its JSON) that is malformed or names an unknown operation."""


def _validate_edges(edges, source: str) -> tuple:
    if not isinstance(edges, (list, tuple)) or not edges:
        raise GenotypeError(f"{source}: 'edges' must be a non-empty list of nodes, got {edges!r}")
    clean = []
    for j, node in enumerate(edges):
        if not isinstance(node, (list, tuple)) or len(node) != EDGES_PER_NODE:
            raise GenotypeError(
                f"{source}: node {j} must have exactly {EDGES_PER_NODE} (op, input) pairs, got {node!r}"
            )
        pairs = []
        for pair in node:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise GenotypeError(f"{source}: node {j}: expected an (op, input) pair, got {pair!r}")
            op, index = pair
            if op not in PRIMITIVES:
                raise GenotypeError(
                    f"{source}: node {j}: unknown operation {op!r}; known: {', '.join(PRIMITIVES)}"
                )
            if op == "none":
                raise GenotypeError(f"{source}: node {j}: 'none' cannot be a chosen operation")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < j + 2:
                raise GenotypeError(
                    f"{source}: node {j}: input index must be an int in [0, {j + 1}], got {index!r}"
                )
            pairs.append((op, index))
        clean.append(tuple(pairs))
    return tuple(clean)


@dataclass(frozen=True)
class Genotype:
    """Discrete IAC: ``edges[j]`` = the two ``(op_name, input_index)`` pairs of node ``j``."""

    edges: tuple

    def __post_init__(self):
        object.__setattr__(self, "edges", _validate_edges(self.edges, "Genotype"))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes."""
        return len(self.edges)

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "edges": [[[op, i] for op, i in node] for node in self.edges],
        }

    @classmethod
    def from_dict(cls, data, source: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise GenotypeError(f"{source}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
        if data.get("version") != FORMAT_VERSION:
            raise GenotypeError(
                f"{source}: unsupported version {data.get('version')!r} (this reader: {FORMAT_VERSION})"
            )
        unknown = set(data) - {"format", "version", "edges"}
        if unknown:
            raise GenotypeError(f"{source}: unknown keys {sorted(unknown)}")
        return cls(_validate_edges(data.get("edges"), source))

    def to_json(self, path=None, indent: int | None = 2) -> str:
        """The JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path) -> Genotype:
        """Parse JSON text, or read it from a file path (a ``Path`` or a string naming a file)."""
        source, text = "genotype JSON", text_or_path
        if isinstance(text_or_path, Path) or (
            isinstance(text_or_path, str) and not text_or_path.lstrip().startswith(("{", "["))
        ):
            source = str(text_or_path)
            try:
                text = Path(text_or_path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise GenotypeError(f"{source}: cannot read genotype file ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source)

    @classmethod
    def coerce(cls, genotype) -> Genotype:
        """A ``Genotype`` from a ``Genotype``, its JSON dict or its JSON text."""
        return as_genotype(genotype)

    # -- display ------------------------------------------------------------------------------
    @staticmethod
    def input_label(index: int) -> str:
        return {0: "input0 (decoder)", 1: "input1 (skip)"}.get(index, f"node{index - 2}")

    def __str__(self) -> str:
        lines = ["Genotype("]
        for j, node in enumerate(self.edges):
            pairs = ", ".join(f"{op} <- {self.input_label(i)}" for op, i in node)
            lines.append(f"  node{j} = {pairs}")
        lines.append(f"  output = concat(node0..node{self.steps - 1}) -> 1x1 conv)")
        return "\n".join(lines)

    def to_dot(self) -> str:
        return genotype_to_dot(self)

    def draw(self, path_png, write_dot: bool = True):
        """Draw the cell diagram to ``path_png`` (and ``<path>.dot`` when ``write_dot``)."""
        return draw_genotype(self, path_png, write_dot=write_dot)


def as_genotype(genotype) -> Genotype:
    """A ``Genotype`` from a ``Genotype``, its JSON dict or its JSON text."""
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, dict):
        return Genotype.from_dict(genotype)
    if isinstance(genotype, str):
        return Genotype.from_json(genotype)
    raise TypeError(f"expected a Genotype, its dict or JSON text, got {type(genotype).__name__}")
