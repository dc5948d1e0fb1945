"""The DAG of one cell (paper Fig. 2): edge counts, the edges entering each node, the edge order
and its inverse, against counts made by hand."""

import pytest

from iac_tf.search.topology import (DEFAULT_STEPS, edge_list, node_edge_slices, num_edges,
                                    steps_for_num_edges)


def test_the_papers_cell_has_14_edges():
    assert DEFAULT_STEPS == 4 and num_edges() == 14 == 2 + 3 + 4 + 5
    assert node_edge_slices() == [(0, 2), (2, 5), (5, 9), (9, 14)]
    assert edge_list()[:5] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert edge_list()[9:] == [(3, i) for i in range(5)]


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7])
def test_slices_edges_and_inverse_agree(steps):
    edges = edge_list(steps)
    assert len(edges) == num_edges(steps) == sum(j + 2 for j in range(steps))
    for j, (start, end) in enumerate(node_edge_slices(steps)):
        # node j reads every earlier state: the two inputs and nodes 0 .. j-1
        assert edges[start:end] == [(j, i) for i in range(j + 2)]
    assert steps_for_num_edges(num_edges(steps)) == steps


@pytest.mark.parametrize("n_edges", [0, 1, 3, 13, 15])
def test_an_edge_count_no_cell_has_is_refused(n_edges):
    with pytest.raises(ValueError, match=f"{n_edges} edges does not match any cell"):
        steps_for_num_edges(n_edges)


@pytest.mark.parametrize("fn", [num_edges, node_edge_slices, edge_list])
def test_steps_must_be_a_positive_int(fn):
    with pytest.raises(ValueError, match="steps"):
        fn(0)
