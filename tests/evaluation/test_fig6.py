"""The Fig. 6 overlay: one line per genotype epoch in each panel; n/a values are skipped."""

from iac_tf.evaluation.plots import _plt, plot_genotype_epochs


def test_fig6_one_line_per_genotype_epoch(tmp_path, monkeypatch):
    for e in (25, 50):
        (tmp_path / f"h{e}.csv").write_text(
            "epoch,soft_dice,val_soft_dice\n0,n/a,0.3\n1,0.2,0.35\n2,0.3,nan\n")
    plt = _plt()
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: saved.append(self))
    plot_genotype_epochs({50: tmp_path / "h50.csv", 25: tmp_path / "h25.csv"}, tmp_path / "f.png")
    (fig,) = saved
    train, val = fig.axes
    assert [line.get_label() for line in train.lines] == ["genotype of epoch 25", "genotype of epoch 50"]
    assert list(train.lines[0].get_xdata()) == [1, 2] and list(val.lines[0].get_xdata()) == [0, 1]
    assert val.get_ylabel() == "val_dt soft Dice"
