"""The report's figures: files written, whole-number epoch ticks, the U-Net's reference line on the
Stage III curves, and overlays of test_dt (else val_dt) with a legend naming the classes.

Each figure is caught as it is saved (``Figure.savefig`` wrapped) so its axes can be read.
"""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from iac_tf.reporting import figures as figs
from iac_tf.reporting.collect import read_run
from tests.evaluation.test_test_split_scores import _run
from tests.reporting.test_report_safety import _write, fake_run

STAGE3 = ("epoch,soft_dice,val_soft_dice,epoch_time_s\n0,n/a,0.70,1.0\n1,0.80,0.72,30.0\n"
          "2,0.85,0.74,30.0\n3,0.88,0.77,30.0\n")


@pytest.fixture
def saved(monkeypatch):
    """The figures saved during the test, in order (and still written to their files)."""
    out = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        out.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return out


def integer_ticks(ax) -> list[float]:
    """The x ticks inside the axis' view (asserting each is a whole number)."""
    lo, hi = sorted(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    return ticks


def test_stage3_curves_have_integer_epochs_and_the_unet_as_reference(tmp_path, saved):
    run = fake_run(tmp_path, "acdc_base")  # Stage I best epoch 2: train 0.90, val 0.75
    _write(run / "stage3" / "history.csv", STAGE3)
    png = figs.stage3_curves(read_run(run), tmp_path / "curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    (fig,) = saved
    train, val = fig.axes
    for ax, unet in ((train, 0.90), (val, 0.75)):
        integer_ticks(ax)
        (line,) = [ln for ln in ax.lines if ln.get_label().startswith("U-Net")]
        assert np.allclose(line.get_ydata(), unet)
        assert "U-Net" in [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()]


def test_arch_evolution_has_integer_epochs(tmp_path, saved):
    run = fake_run(tmp_path, "acdc_base")
    rng = np.random.default_rng(0)
    for epoch in (1, 2, 3):
        _write(run / "stage2" / "arch" / f"epoch_{epoch:03d}.json", json.dumps(
            {"epoch": epoch, "phi": rng.dirichlet(np.ones(8), 5).tolist(),
             "psi": [rng.uniform(size=2).tolist(), rng.uniform(size=3).tolist()]}))
    figs.arch_evolution(read_run(run), tmp_path / "arch.png")
    (fig,) = saved
    assert [integer_ticks(ax)[0] >= 1 for ax in fig.axes] == [True, True]
    assert (tmp_path / "arch.png").stat().st_size > 0


def test_genotype_diagrams_are_drawn_afresh_for_the_report(tmp_path):
    run = fake_run(tmp_path, "acdc_base")
    genotype = {"format": "iac_tf.genotype", "version": 1,
                "edges": [[["sep_conv_3x3", 1], ["skip_connect", 0]],
                          [["dil_conv_5x5", 2], ["max_pool_3x3", 0]]]}
    _write(run / "stage2" / "genotypes" / "epoch_001.json", json.dumps(genotype))
    _write(run / "stage2" / "genotypes" / "epoch_001.png", "an old drawing")
    (caption, png), = figs.genotype_diagrams(read_run(run), tmp_path)
    assert png.parent == tmp_path and png.read_bytes()[:4] == b"\x89PNG"
    assert caption == "acdc_base: genotype of search epoch 001"


def _rows_of(fig) -> tuple[str, list[str], list[str]]:
    """(title, the row names of the first column, the legend's class names) of an overlay."""
    axes = np.array(fig.axes).reshape(-1, 4)
    return (fig._suptitle.get_text(), [row[0].get_ylabel() for row in axes],
            [t.get_text() for t in fig.legends[0].get_texts()])


def test_overlays_show_test_dt_one_slice_per_case_with_a_legend(tmp_path, saved):
    cfg, _ = _run(tmp_path, test_cases=("t0", "t1"))
    png = figs.overlays(read_run(cfg.run_dir), tmp_path / "overlays.png", n_slices=3, batch_size=8)
    assert png.stat().st_size > 0
    title, rows, legend = _rows_of(saved[-1])
    assert title.startswith("run: test_dt")
    assert [r.split(" ")[0] for r in rows] == ["t0", "t1", "t0"]  # each case before a second slice
    assert rows[0] != rows[2]
    assert legend == ["organ", "lesion"]


def test_overlays_without_test_dt_show_val_dt_with_a_legend(tmp_path, saved):
    cfg, prepared = _run(tmp_path)
    figs.overlays(read_run(cfg.run_dir), tmp_path / "overlays.png", n_slices=2, batch_size=8)
    title, rows, legend = _rows_of(saved[-1])
    assert title.startswith("run: val_dt")
    val_cases = prepared.splits["cases"]["val_dt"]
    assert {r.split(" ")[0] for r in rows} <= set(val_cases)
    assert len({r.split(" ")[0] for r in rows}) == min(2, len(val_cases))
    assert legend == ["organ", "lesion"]
