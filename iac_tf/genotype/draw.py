"""Cell diagrams of a genotype: Graphviz DOT text and a PNG drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from iac_tf.files import atomic_write_text, save_figure


def genotype_to_dot(genotype) -> str:
    """DOT source of the cell (render with ``dot -Tpng`` where Graphviz is installed)."""
    lines = [
        "digraph IAC {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  in0 [label="input0\\n(decoder)", fillcolor=darkseagreen2];',
        '  in1 [label="input1\\n(skip)", fillcolor=darkseagreen2];',
    ]
    names = ["in0", "in1"] + [f"n{j}" for j in range(genotype.steps)]
    for j in range(genotype.steps):
        lines.append(f'  n{j} [label="node{j}", fillcolor=lightblue];')
    lines.append('  out [label="concat + 1x1 conv", fillcolor=palegoldenrod];')
    for j, node in enumerate(genotype.edges):
        for op, i in node:
            lines.append(f'  {names[i]} -> n{j} [label="{op}"];')
    for j in range(genotype.steps):
        lines.append(f"  n{j} -> out;")
    lines.append("}")
    return "\n".join(lines) + "\n"


#: One colour per operation (edge and label alike), so an edge and its label read together.
OP_COLOURS = {"max_pool_3x3": "#1f77b4", "avg_pool_3x3": "#17becf", "skip_connect": "#7f7f7f",
              "sep_conv_3x3": "#d62728", "sep_conv_5x5": "#9467bd", "dil_conv_3x3": "#2ca02c",
              "dil_conv_5x5": "#8c564b"}
#: Where along its arc an edge label may sit (fractions of the arc from the source), tried in
#: this order until the label overlaps no node and no label placed before it.
LABEL_POSITIONS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.35, 0.65, 0.25, 0.75, 0.45, 0.55, 0.2, 0.8)
EDGE_LABEL = "edge_label"  # the gid of every edge label (tests find them by it)
NODE_LABEL = "node_label"


def genotype_figure(genotype):
    """The cell as a matplotlib ``Figure`` (no pyplot): inputs on the left, the intermediate
    nodes in a zigzag, the output on the right; every chosen edge an arc coloured by its
    operation and labelled with it, each label placed where it overlaps no node and no other
    label (the first free spot of :data:`LABEL_POSITIONS` along its arc)."""
    # no pyplot: leaves the user's backend alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - slow; see draw_genotype
    from matplotlib.figure import Figure  # noqa: PLC0415

    steps = genotype.steps
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for j in range(steps):
        pos[j + 2] = (1.0 + j, 1.3 if j % 2 == 0 else -1.3)
    pos["out"] = (steps + 1.0, 0.0)
    labels = {0: "input0\n(decoder)", 1: "input1\n(skip)", "out": "concat\n+ 1x1 conv"}
    labels.update({j + 2: f"node{j}" for j in range(steps)})
    colours = {0: "#c1e1c1", 1: "#c1e1c1", "out": "#eee8aa"}

    fig = Figure(figsize=(2.4 * (steps + 2), 4.8))
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # fixed: display positions below stay valid
    ax.set_axis_off()
    ax.set_xlim(-0.6, steps + 1.6)
    ax.set_ylim(-1.9, 1.9)
    taken = []
    for key, (x, y) in pos.items():
        node = ax.text(x, y, labels[key], ha="center", va="center", fontsize=10, zorder=3,
                       gid=NODE_LABEL,
                       bbox={"boxstyle": "round,pad=0.4", "fc": colours.get(key, "#add8e6"),
                             "ec": "0.3"})
        taken.append(_box(node, renderer))
    arrow = {"arrowstyle": "-|>", "shrinkA": 20, "shrinkB": 20, "lw": 1.4}
    for j in range(steps):
        ax.annotate("", xy=pos["out"], xytext=pos[j + 2],
                    arrowprops={**arrow, "color": "0.75", "lw": 1.0}, zorder=1)
    to_display = ax.transData.transform
    for j, node in enumerate(genotype.edges):
        for k, (op, i) in enumerate(node):
            rad = 0.2 if k == 0 else -0.2
            colour = OP_COLOURS.get(op, "0.3")
            ax.annotate("", xy=pos[j + 2], xytext=pos[i], zorder=2,
                        arrowprops={**arrow, "color": colour,
                                    "connectionstyle": f"arc3,rad={rad}"})
            # matplotlib's arc3 in display space: a quadratic Bezier whose control point is
            # the chord's midpoint moved by rad * (dy, -dx)
            p0, p2 = to_display(pos[i]), to_display(pos[j + 2])
            (dx, dy) = p2 - p0
            control = (p0 + p2) / 2 + rad * np.array([dy, -dx])
            text = ax.text(0, 0, op, fontsize=9, ha="center", va="center", color=colour,
                           zorder=4, gid=EDGE_LABEL, fontweight="bold",
                           bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour,
                                 "lw": 0.8})
            best = None
            for t in LABEL_POSITIONS:
                point = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * control + t ** 2 * p2
                text.set_position(ax.transData.inverted().transform(point))
                box = _box(text, renderer)
                clash = sum(_overlap(box, other) for other in taken)
                if best is None or clash < best[0]:
                    best = (clash, text.get_position(), box)
                if clash == 0:
                    break
            text.set_position(best[1])
            taken.append(best[2])
    return fig


def _box(text, renderer):
    """Display extent of ``text`` with its box and a 2-pixel margin: (x0, y0, x1, y1)."""
    patch = text.get_bbox_patch()
    if patch is not None:
        text.update_bbox_position_size(renderer)
        ext = patch.get_window_extent(renderer)
    else:
        ext = text.get_window_extent(renderer)
    return (ext.x0 - 2, ext.y0 - 2, ext.x1 + 2, ext.y1 + 2)


def _overlap(a, b) -> float:
    """Area shared by two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def draw_genotype(genotype, path_png, write_dot: bool = True) -> Path:
    """Draw the cell to ``path_png`` (:func:`genotype_figure`); also write ``.dot`` beside it."""
    path_png = Path(path_png)
    fig = genotype_figure(genotype)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path_png, dpi=fig.dpi)
    if write_dot:
        atomic_write_text(path_png.with_suffix(".dot"), genotype_to_dot(genotype))
    return path_png
