"""The Fig. 6 overlay: one line per genotype epoch in each panel; n/a values are skipped; epochs
are ticked at whole numbers (also on every learning-curve plot of a run).

Covers: iac_tf/evaluation/plots.py
"""

import pathlib
from iac_tf.evaluation.plots import _plt, plot_genotype_epochs, plot_history


def whole_ticks(ax) -> list[float]:
    lo, hi = sorted(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    return ticks


def test_fig6_one_line_per_genotype_epoch(tmp_path, monkeypatch):
    for e in (25, 50):
        (tmp_path / f"h{e}.csv").write_text(
            "epoch,soft_dice,val_soft_dice\n0,n/a,0.3\n1,0.2,0.35\n2,0.3,nan\n")
    plt = _plt()
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, path, *a, **k: saved.append(self) or
                        pathlib.Path(path).write_bytes(b"png"))
    plot_genotype_epochs({50: tmp_path / "h50.csv", 25: tmp_path / "h25.csv"}, tmp_path / "f.png")
    (fig,) = saved
    train, val = fig.axes
    assert [line.get_label() for line in train.lines] == ["genotype of epoch 25", "genotype of epoch 50"]
    assert list(train.lines[0].get_xdata()) == [1, 2] and list(val.lines[0].get_xdata()) == [0, 1]
    assert val.get_ylabel() == "val_dt soft Dice"
    assert whole_ticks(train) and whole_ticks(val)


def test_learning_curves_tick_whole_epochs(tmp_path, monkeypatch):
    (tmp_path / "h.csv").write_text("epoch,loss,val_loss,soft_dice,val_soft_dice\n"
                                    "1,0.9,0.95,0.1,0.05\n2,0.8,0.9,0.2,0.1\n3,0.7,0.85,0.3,0.2\n")
    plt = _plt()
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, path, *a, **k: saved.append(self) or
                        pathlib.Path(path).write_bytes(b"png"))
    plot_history(tmp_path / "h.csv", tmp_path / "curves.png")
    (fig,) = saved
    assert [whole_ticks(ax) for ax in fig.axes] == [[1, 2, 3], [1, 2, 3]]
