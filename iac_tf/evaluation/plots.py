"""Plots written into run folders (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from iac_tf.files import save_figure


def _plt():
    import matplotlib  # noqa: PLC0415 - slow; the pipeline imports this module also when it plots nothing

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415 - slow, as above; after the backend is chosen

    return plt


def plot_history(history_csv, out_png, keys_pairs=(("loss", "val_loss"), ("soft_dice", "val_soft_dice")), title=""):
    """Learning curves from an epoch ``history.csv``: one panel per (train, val) key pair."""
    rows = list(csv.DictReader(io.StringIO(pathlib.Path(history_csv).read_text())))
    if not rows:
        raise ValueError(f"{history_csv}: no epochs logged")
    plt = _plt()
    pairs = [p for p in keys_pairs if any(k in rows[0] for k in p)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 3.5), squeeze=False)
    epochs = [int(r["epoch"]) for r in rows]
    for ax, pair in zip(axes[0], pairs):
        for key in pair:
            if key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], label=key)
        ax.set_xlabel("epoch")
        integer_ticks(ax)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(plt, fig, out_png)


def plot_paired_dice(baseline, candidate, out_png, labels=("baseline", "IAC"), title="Dice per case"):
    """Paired per-case Dice: one line per case from baseline to candidate, plus box plots."""
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    keep = ~(np.isnan(b) | np.isnan(c))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for bi, ci in zip(b[keep], c[keep]):
        ax.plot([0, 1], [bi, ci], color="0.6", lw=0.8)
    ax.boxplot([b[keep], c[keep]], positions=[0, 1], widths=0.3)
    ax.set_xticks([0, 1], labels)
    _dice_axis(ax, title)
    return _save(plt, fig, out_png)


def plot_dice_per_method(scores: dict, out_png, title="Dice per case"):
    """Box plots of per-case Dice, one per model (``scores``: name -> per-case values)."""
    plt = _plt()
    names = list(scores)
    data = [np.asarray(v, dtype=float)[~np.isnan(np.asarray(v, dtype=float))] for v in scores.values()]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
    ax.boxplot(data, positions=range(len(names)), widths=0.5)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    _dice_axis(ax, title)
    return _save(plt, fig, out_png)


def plot_genotype_epochs(histories: dict, out_png, keys=("soft_dice", "val_soft_dice"),
                         title="Stage III per genotype epoch"):
    """The paper's Fig. 6: Stage III learning curves of each genotype epoch overlaid, one panel
    per key (soft Dice on train_dt and on val_dt). ``histories``: genotype epoch -> ``history.csv``."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    labels = {"soft_dice": "train_dt soft Dice", "val_soft_dice": "val_dt soft Dice",
              "loss": "train_dt loss", "val_loss": "val_dt loss"}
    for epoch, path in sorted(histories.items()):
        rows = list(csv.DictReader(io.StringIO(pathlib.Path(path).read_text())))
        if not rows:
            raise ValueError(f"{path}: no epochs logged")
        for ax, key in zip(axes[0], keys):
            # unmeasured values (e.g. train_dt at the "epoch 0" row) are logged as n/a: skipped
            points = [(int(r["epoch"]), _number(r.get(key))) for r in rows]
            points = [(e, v) for e, v in points if v is not None]
            ax.plot([e for e, _ in points], [v for _, v in points], marker=".",
                    label=f"genotype of epoch {epoch}")
    for ax, key in zip(axes[0], keys):
        ax.set_xlabel("Stage III epoch")
        integer_ticks(ax)
        ax.set_ylabel(labels.get(key, key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, out_png)


def integer_ticks(ax) -> None:
    """Ticks of the x axis (epochs) at whole numbers only."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 - slow, as in _plt

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def _dice_axis(ax, title: str) -> None:
    """A Dice axis: label, the [0, 1] range with a margin, the title."""
    ax.set_ylabel("Dice")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)


def _save(plt, fig, out_png) -> pathlib.Path:
    """Lay out, write ``out_png`` (100 dpi), close the figure; return the path."""
    fig.tight_layout()
    save_figure(fig, out_png, dpi=100)
    plt.close(fig)
    return pathlib.Path(out_png)
