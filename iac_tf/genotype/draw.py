"""Cell diagrams of a genotype: Graphviz DOT text and a PNG drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path

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


def draw_genotype(genotype, path_png, write_dot: bool = True) -> Path:
    """Draw the cell to ``path_png`` with matplotlib; also write ``.dot`` beside it."""
    # no pyplot: leaves the user's backend alone
    from matplotlib.figure import Figure  # noqa: PLC0415 - slow; iac_tf.genotype is mostly used without drawing

    path_png = Path(path_png)
    steps = genotype.steps
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for j in range(steps):
        pos[j + 2] = (1.0 + j, 1.3 if j % 2 == 0 else -1.3)
    pos["out"] = (steps + 1.0, 0.0)
    labels = {0: "input0\n(decoder)", 1: "input1\n(skip)", "out": "concat\n+ 1x1 conv"}
    labels.update({j + 2: f"node{j}" for j in range(steps)})
    colours = {0: "#c1e1c1", 1: "#c1e1c1", "out": "#eee8aa"}

    fig = Figure(figsize=(2.2 * (steps + 2), 4.5))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_xlim(-0.7, steps + 1.7)
    ax.set_ylim(-2.0, 2.0)
    arrow = {"arrowstyle": "-|>", "color": "0.3", "shrinkA": 18, "shrinkB": 18}
    for j, node in enumerate(genotype.edges):
        for k, (op, i) in enumerate(node):
            rad = 0.15 if k == 0 else -0.15
            ax.annotate("", xy=pos[j + 2], xytext=pos[i],
                        arrowprops={**arrow, "connectionstyle": f"arc3,rad={rad}"})
            (x0, y0), (x1, y1) = pos[i], pos[j + 2]
            # label at the middle of the arc3 curve: chord midpoint + rad/2 * (dy, -dx)
            lx = (x0 + x1) / 2 + rad / 2 * (y1 - y0)
            ly = (y0 + y1) / 2 - rad / 2 * (x1 - x0)
            ax.text(lx, ly, op, fontsize=8, ha="center", va="center", color="#8b0000",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for j in range(steps):
        ax.annotate("", xy=pos["out"], xytext=pos[j + 2], arrowprops={**arrow, "color": "0.6"})
    for key, (x, y) in pos.items():
        ax.text(x, y, labels[key], ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "fc": colours.get(key, "#add8e6"), "ec": "0.3"})
    fig.tight_layout()
    path_png.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path_png, dpi=100)
    if write_dot:
        atomic_write_text(path_png.with_suffix(".dot"), genotype_to_dot(genotype))
    return path_png
