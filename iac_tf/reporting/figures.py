"""The report's figures, one PNG per run and kind (matplotlib ``Figure``: no pyplot state).

* ``stage3_curves``: Stage III learning curves on train_dt and val_dt, one line per genotype epoch
  of a sweep (the paper's Fig. 6);
* ``arch_evolution``: softmax(alpha) per operation (mean over the edges, eq. 1) and Psi per edge
  (eq. 4 / 6-10) after every search epoch, from ``stage2/arch/epoch_XXX.json``;
* ``genotype``: the cell diagrams of the last search epoch and of the swept epochs;
* ``overlays``: image / ground truth / U-Net / IAC on a few val_dt slices (the slices with the
  largest ground-truth area), predictions thresholded at 0.5 per class.
Each function returns the PNG path, or raises ``FigureUnavailable`` saying what is missing or
which file could not be read.
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
from matplotlib.figure import Figure

from iac_tf.data import prepare_dataset
from iac_tf.experiment import load_experiment
from iac_tf.files import save_figure
from iac_tf.genotype import Genotype
from iac_tf.reporting.collect import TRAIN_DICE, VAL_DICE, RunRecord
from iac_tf.run_layout import RunLayout
from iac_tf.search.operations import PRIMITIVES
from iac_tf.models import load_unet


class FigureUnavailable(Exception):
    """The run lacks what a figure needs (the message says what)."""


def _figure(*args, **kwargs):
    return Figure(*args, **kwargs)


def _rows(path: pathlib.Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FigureUnavailable(f"{path} not readable ({exc})") from None


def _col(rows, key) -> np.ndarray:
    out = []
    for r in rows:
        try:
            out.append(float(r.get(key, "nan")))
        except (TypeError, ValueError):  # an empty / short row of a cut-off file
            out.append(float("nan"))
    return np.array(out)


def stage3_curves(rec: RunRecord, out_png: pathlib.Path) -> pathlib.Path:
    dirs = {k: d for k, d in RunLayout(rec.run_dir).stage3_dirs().items() if (d / "history.csv").exists()}
    if not dirs:
        raise FigureUnavailable("no stage3 history.csv")
    fig = _figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for label, d in dirs.items():
        rows = _rows(d / "history.csv")
        ep = _col(rows, "epoch")
        train_key = next((k for k in TRAIN_DICE if rows and k in rows[0]), TRAIN_DICE[0])
        val_key = next((k for k in VAL_DICE if rows and k in rows[0]), VAL_DICE[0])
        axes[0].plot(ep, _col(rows, train_key), marker=".", label=label)
        axes[1].plot(ep, _col(rows, val_key), marker=".", label=label)
    for ax, title in zip(axes, ("train_dt soft Dice", "val_dt soft Dice")):
        ax.set_xlabel("Stage III epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{rec.name}: Stage III learning curves (Fig. 6)")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=90)
    return out_png


def arch_evolution(rec: RunRecord, out_png: pathlib.Path) -> pathlib.Path:
    files = sorted((rec.run_dir / "stage2" / "arch").glob("epoch_*.json"))
    if not files:
        raise FigureUnavailable("no stage2/arch/epoch_*.json")
    states = []
    for f in files:
        try:
            state = json.loads(f.read_text(encoding="utf-8"))
            states.append({"epoch": state.get("epoch", len(states) + 1),
                           "phi": np.asarray(state["phi"], float).mean(axis=0),
                           "psi": np.concatenate([np.ravel(np.asarray(p, float)) for p in state["psi"]])})
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FigureUnavailable(f"{f} not readable ({type(exc).__name__}: {exc})") from None
    epochs = [s["epoch"] for s in states]
    try:
        phi = np.array([s["phi"] for s in states], float)  # (E, ops)
        psi = np.array([s["psi"] for s in states], float)  # (E, edges)
    except ValueError:
        raise FigureUnavailable("stage2/arch/epoch_*.json differ in shape") from None
    if phi.ndim != 2 or psi.ndim != 2:
        raise FigureUnavailable("stage2/arch/epoch_*.json: phi / psi have an unexpected shape")
    ops = _op_names(phi.shape[1])
    fig = _figure(figsize=(11, 3.8))
    ax0, ax1 = fig.subplots(1, 2)
    for k in range(phi.shape[1]):
        ax0.plot(epochs, phi[:, k], marker=".", label=ops[k])
    ax0.set_title("softmax(alpha) per operation, mean over edges (eq. 1)")
    ax0.legend(fontsize=6, ncol=2)
    ax0.ticklabel_format(axis="y", useOffset=False)
    for k in range(psi.shape[1]):
        ax1.plot(epochs, psi[:, k], lw=1)
    ax1.set_title(f"Psi of each of the {psi.shape[1]} edges (beta, eq. 4/6-10)")
    for ax in (ax0, ax1):
        ax.set_xlabel("search epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{rec.name}: architecture parameters during the search")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=90)
    return out_png


def _op_names(n: int) -> list[str]:
    if len(PRIMITIVES) == n:
        return list(PRIMITIVES)
    return [f"op {k}" for k in range(n)]


def genotype_diagrams(rec: RunRecord, out_dir: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """``(caption, png)`` for the last searched genotype and each swept epoch's genotype."""
    gdir = rec.run_dir / "stage2" / "genotypes"
    jsons = sorted(gdir.glob("epoch_*.json"))
    if not jsons:
        raise FigureUnavailable("no stage2/genotypes/epoch_*.json")
    wanted = {jsons[-1]}
    wanted |= {gdir / f"epoch_{e:03d}.json" for e in rec.epoch_scores if (gdir / f"epoch_{e:03d}.json").exists()}
    out = []
    for path in sorted(wanted):
        png = path.with_suffix(".png")
        if not png.exists():
            png = out_dir / f"{rec.name}_genotype_{path.stem}.png"
            try:
                genotype = Genotype.from_json(path)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise FigureUnavailable(f"{path} not readable ({type(exc).__name__}: {exc})") from None
            genotype.draw(png)
        out.append((f"{rec.name}: genotype of search {path.stem.replace('_', ' ')}", png))
    return out


def overlays(rec: RunRecord, out_png: pathlib.Path, n_slices: int = 3, batch_size: int = 16) -> pathlib.Path:
    """Image / ground truth / U-Net / IAC on ``n_slices`` val_dt slices (needs the run's data cache
    or data, and both models)."""
    cfg_path = rec.run_dir / "config.yaml"
    if not cfg_path.exists():
        raise FigureUnavailable("no config.yaml")
    try:
        cfg = load_experiment(cfg_path)
    except Exception as exc:  # noqa: BLE001 - e.g. a config of another code version
        raise FigureUnavailable(f"config.yaml not loadable by this code version ({exc})") from None
    layout = RunLayout(rec.run_dir)  # the folder as it is now (it may have been moved)
    paths = layout.model_paths()
    unet_path = paths.get("unet") or (pathlib.Path(cfg.unet.pretrained) if cfg.unet.pretrained
                                      else layout.best_model(layout.stage(1)))
    iac_path = paths.get("iac") or layout.best_model(layout.stage(3))
    for p in (unet_path, iac_path):
        if not p.exists():
            raise FigureUnavailable(f"model {p} not found")
    try:
        prepared = prepare_dataset(cfg.data, progress=False)
    except Exception as exc:  # noqa: BLE001 - data not mounted where the run had it
        raise FigureUnavailable(f"data not available ({exc})") from None
    split = cfg.evaluation.split
    images, masks, cases = prepared.arrays(split)
    if len(images) == 0:
        raise FigureUnavailable(f"no {split} slices")
    pick = np.argsort(-masks.reshape(len(masks), -1).sum(axis=1), kind="stable")[:n_slices]
    x = images[pick]
    preds = {}
    for label, path in (("U-Net", unet_path), ("IAC", iac_path)):
        try:
            model = load_unet(path)
        except Exception as exc:  # noqa: BLE001 - e.g. a model saved by an older code version
            raise FigureUnavailable(f"{path} not loadable by this code version ({exc})") from None
        preds[label] = np.asarray(model.predict(x, batch_size=batch_size, verbose=0)) > 0.5
    columns = [("image", None), ("ground truth", masks[pick] > 0.5), ("U-Net", preds["U-Net"]),
               ("IAC", preds["IAC"])]
    fig = _figure(figsize=(2.4 * len(columns), 2.4 * len(pick)))
    axes = fig.subplots(len(pick), len(columns), squeeze=False)
    for i, s in enumerate(pick):
        img = x[i, ..., 0]
        for j, (title, m) in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray")
            if m is not None:
                ax.imshow(_colour(m[i]), alpha=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{cases[s]} #{s}", fontsize=7)
    fig.suptitle(f"{rec.name}: {split} slices")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=80)
    return out_png


def _colour(mask: np.ndarray) -> np.ndarray:
    """(H, W, K) booleans -> RGBA, one colour per class, transparent background."""
    palette = np.array([[1, 0, 0], [0, 1, 0], [0, 0.4, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], float)
    h, w, k = mask.shape
    rgba = np.zeros((h, w, 4))
    for c in range(k):
        rgba[mask[..., c], :3] = palette[c % len(palette)]
        rgba[mask[..., c], 3] = 1.0
    return rgba
