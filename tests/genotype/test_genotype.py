"""Genotype record: validation, JSON round trip and errors, printing, DOT and PNG drawing.

Covers: iac_tf/genotype/draw.py, iac_tf/genotype/__init__.py
"""

import json

import pytest

from iac_tf.genotype import FORMAT_VERSION, Genotype, GenotypeError

EDGES = (
    (("sep_conv_3x3", 1), ("skip_connect", 0)),
    (("dil_conv_5x5", 2), ("max_pool_3x3", 0)),
    (("avg_pool_3x3", 3), ("sep_conv_5x5", 1)),
    (("dil_conv_3x3", 4), ("skip_connect", 2)),
)


def test_json_round_trip(tmp_path):
    g = Genotype(EDGES)
    assert Genotype.from_json(g.to_json()) == g
    path = tmp_path / "genotype.json"
    g.to_json(path)
    assert Genotype.from_json(path) == g
    assert Genotype.from_json(str(path)) == g
    data = json.loads(path.read_text())
    assert data["version"] == FORMAT_VERSION and data["edges"][0] == [["sep_conv_3x3", 1], ["skip_connect", 0]]
    assert Genotype([[list(p) for p in node] for node in EDGES]) == g  # lists accepted


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"format": "darts", "version": 1, "edges": []}', "'format' must be"),
    ('{"format": "iac_tf.genotype", "version": 99, "edges": []}', "unsupported version 99"),
    ('{"format": "iac_tf.genotype", "version": 1, "edges": [], "x": 1}', "unknown keys"),
    ('{"format": "iac_tf.genotype", "version": 1, "edges": []}', "non-empty list"),
    ('{"format": "iac_tf.genotype", "version": 1, "edges": [[["conv_7x7", 0], ["skip_connect", 1]]]}',
     "unknown operation 'conv_7x7'"),
    ('{"format": "iac_tf.genotype", "version": 1, "edges": [[["none", 0], ["skip_connect", 1]]]}',
     "'none' cannot"),
    ('{"format": "iac_tf.genotype", "version": 1, "edges": [[["skip_connect", 2], ["skip_connect", 1]]]}',
     r"input index must be an int in \[0, 1\]"),
    ('{"format": "iac_tf.genotype", "version": 1, "edges": [[["skip_connect", 0]]]}', "exactly 2"),
])
def test_malformed_json(text, match):
    with pytest.raises(GenotypeError, match=match):
        Genotype.from_json(text)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(GenotypeError, match="missing.json"):
        Genotype.from_json(tmp_path / "missing.json")


def test_readable_str_and_dot():
    g = Genotype(EDGES)
    text = str(g)
    assert "node0 = sep_conv_3x3 <- input1 (skip), skip_connect <- input0 (decoder)" in text
    assert "node3 = dil_conv_3x3 <- node2" in text
    dot = g.to_dot()
    assert dot.startswith("digraph") and 'n1 -> n2 [label="avg_pool_3x3"]' in dot
    assert dot.count("->") == 8 + 4


def test_draw_png_and_dot(tmp_path):
    path = Genotype(EDGES).draw(tmp_path / "cell.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    assert (tmp_path / "cell.dot").read_text().startswith("digraph")


def test_the_record_loads_without_tensorflow():
    """The genotype record is pure data (as PC-DARTS' genotypes.py): reading or validating a
    genotype file imports no TensorFlow."""
    import subprocess
    import sys

    code = ("import sys; from iac_tf.genotype import Genotype; "
            "from iac_tf.genotype.genotype import Genotype as G; "
            "g = Genotype(edges=((('sep_conv_3x3', 1), ('skip_connect', 0)),)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("edges", [
    EDGES,
    # the labels of the middle crossing edges fell on one spot with a fixed mid-arc position
    ((("sep_conv_3x3", 0), ("skip_connect", 1)), (("dil_conv_5x5", 0), ("max_pool_3x3", 1)),
     (("avg_pool_3x3", 0), ("sep_conv_5x5", 1)), (("dil_conv_3x3", 0), ("skip_connect", 1))),
    ((("sep_conv_5x5", 1), ("sep_conv_5x5", 0)), (("max_pool_3x3", 0), ("sep_conv_3x3", 2))),
    ((("dil_conv_5x5", 0), ("dil_conv_5x5", 1)), (("dil_conv_5x5", 2), ("dil_conv_5x5", 1)),
     (("dil_conv_5x5", 3), ("dil_conv_5x5", 2)), (("dil_conv_5x5", 4), ("dil_conv_5x5", 0)),
     (("dil_conv_5x5", 5), ("dil_conv_5x5", 1))),
])
def test_edge_labels_overlap_no_other_label_and_no_node(edges):
    from iac_tf.genotype.draw import EDGE_LABEL, NODE_LABEL, genotype_figure

    g = Genotype(edges)
    fig = genotype_figure(g)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # lays out every text and its box as saved

    def box(text):
        return text.get_bbox_patch().get_window_extent(renderer)

    texts = fig.axes[0].texts
    labels = [t for t in texts if t.get_gid() == EDGE_LABEL]
    nodes = [t for t in texts if t.get_gid() == NODE_LABEL]
    assert sorted(t.get_text() for t in labels) == sorted(op for node in g.edges for op, _ in node)
    assert len(nodes) == g.steps + 3
    for i, a in enumerate(labels):
        for b in labels[i + 1:] + nodes:
            assert not box(a).overlaps(box(b)), (a.get_text(), b.get_text())
        inside = box(a).x0 >= 0 and box(a).y0 >= 0
        assert inside and box(a).x1 <= fig.bbox.width and box(a).y1 <= fig.bbox.height
