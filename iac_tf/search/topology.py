"""The DAG of one cell: which edges enter which node, in the DARTS edge order.

A cell has two inputs (state 0 = ``input0``, the upsampled decoder features; state 1 =
``input1``, the encoder skip features) and ``steps`` intermediate nodes. Node ``j`` takes every
earlier state ``i = 0 .. j+1`` (inputs first, then earlier nodes, Fig. 2), so with 4 nodes there
are 2 + 3 + 4 + 5 = 14 edges. Edges are numbered node by node::

    node 0: edges 0, 1        node 2: edges 5 .. 8
    node 1: edges 2, 3, 4     node 3: edges 9 .. 13

and edge ``offset_j + i`` carries state ``i`` into node ``j``. ``alpha[e]`` and ``beta[e]`` belong
to edge ``e``; the beta values of node ``j`` are ``beta[offset_j : offset_j + j + 2]``.
"""

from __future__ import annotations

from iac_tf.search.checks import check_positive_int

DEFAULT_STEPS = 4


def _check_steps(steps: int) -> int:
    return check_positive_int("cell", "steps (number of intermediate nodes)", steps)


def num_edges(steps: int = DEFAULT_STEPS) -> int:
    """Number of edges of a cell with ``steps`` intermediate nodes (14 for 4)."""
    _check_steps(steps)
    return sum(j + 2 for j in range(steps))


def node_edge_slices(steps: int = DEFAULT_STEPS) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: edges ``start .. end-1`` enter node ``j`` (one pair per node)."""
    _check_steps(steps)
    slices, start = [], 0
    for j in range(steps):
        end = start + j + 2
        slices.append((start, end))
        start = end
    return slices


def edge_list(steps: int = DEFAULT_STEPS) -> list[tuple[int, int]]:
    """``[(node j, input state i), ...]`` in edge order (edge ``e`` is ``edge_list()[e]``)."""
    return [(j, i) for j in range(_check_steps(steps)) for i in range(j + 2)]


def steps_for_num_edges(n_edges: int) -> int:
    """Inverse of :func:`num_edges`; a clear error for a count no cell has (e.g. 13)."""
    steps, total = 0, 0
    while total < n_edges:
        total += steps + 2
        steps += 1
    if total != n_edges or steps == 0:
        raise ValueError(
            f"{n_edges} edges does not match any cell (valid counts: 2, 5, 9, 14, 20, ...)"
        )
    return steps
