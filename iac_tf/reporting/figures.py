"""The report's figures, one PNG per run and kind (matplotlib ``Figure``: no pyplot state).

* ``stage3_curves``: Stage III learning curves on train_dt and val_dt, one line per genotype epoch
  of a sweep (the paper's Fig. 6);
* ``arch_evolution``: softmax(alpha) per operation (mean over the edges, eq. 1) and Psi per edge
  (eq. 4 / 6-10) after every search epoch, from ``stage2/arch/epoch_XXX.json``;
* ``genotype``: the cell diagrams of the last search epoch and of the swept epochs;
* ``overlays``: image / ground truth / U-Net / IAC on a few slices, one per case (each case's
  slice with the largest ground-truth area), with a legend naming the classes: of test_dt
  (whole volumes predicted as ``iac predict`` does) when the run has one, else of the
  evaluation split's cached slices, the predictions as the run's decision rule makes them
  (:func:`prediction_masks`: the label map of ``iac predict`` with ``evaluation.metric: labels``).
Each function returns the PNG path, or raises ``FigureUnavailable`` saying what is missing or
which file could not be read.
"""

from __future__ import annotations

import csv
import json
import pathlib

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from iac_tf.data import TEST_SPLIT, prepare_dataset
from iac_tf.data.nifti import load_nifti
from iac_tf.data.prepare import volume_cases
from iac_tf.evaluation.plots import integer_ticks
from iac_tf.config.experiment import load_experiment
from iac_tf.files import save_figure
from iac_tf.genotype import Genotype, GenotypeError
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.predict import predict_volume
from iac_tf.inference.tiling import keras_predictor
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.labels import LabelRule
from iac_tf.reporting.collect import TRAIN_DICE, VAL_DICE, RunRecord
from iac_tf.run_layout import CONFIG, EPOCH_GLOB, HISTORY, RunLayout
from iac_tf.primitives import PRIMITIVES
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
    """Stage III's soft Dice per epoch on train_dt and val_dt, one line per genotype epoch, with
    the U-Net's own score (Stage I's best epoch, the same metric) as a dashed reference line."""
    layout = RunLayout(rec.run_dir)
    dirs = {k: d for k, d in layout.stage3_dirs().items() if layout.history(d).exists()}
    if not dirs:
        raise FigureUnavailable(f"no {layout.stage_name(3)} {HISTORY}")
    fig = _figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for label, d in dirs.items():
        rows = _rows(layout.history(d))
        ep = _col(rows, "epoch")
        train_key = next((k for k in TRAIN_DICE if rows and k in rows[0]), TRAIN_DICE[0])
        val_key = next((k for k in VAL_DICE if rows and k in rows[0]), VAL_DICE[0])
        axes[0].plot(ep, _col(rows, train_key), marker=".", label=label)
        axes[1].plot(ep, _col(rows, val_key), marker=".", label=label)
    for ax, title, unet in zip(axes, ("train_dt soft Dice", "val_dt soft Dice"),
                               (rec.train_dice, rec.val_soft_dice)):
        if not np.isnan(unet):
            ax.axhline(unet, color="0.2", ls="--", lw=1.2, label=f"U-Net (Stage I best epoch) {unet:.3f}")
        ax.set_xlabel("Stage III epoch")
        integer_ticks(ax)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{rec.name}: Stage III learning curves (Fig. 6)")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=90)
    return out_png


def arch_evolution(rec: RunRecord, out_png: pathlib.Path) -> pathlib.Path:
    layout = RunLayout(rec.run_dir)
    files = layout.arch_files()
    pattern = f"{layout.rel(layout.arch)}/{EPOCH_GLOB}.json"
    if not files:
        raise FigureUnavailable(f"no {pattern}")
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
        raise FigureUnavailable(f"{pattern} differ in shape") from None
    if phi.ndim != 2 or psi.ndim != 2:
        raise FigureUnavailable(f"{pattern}: phi / psi have an unexpected shape")
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
        integer_ticks(ax)
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
    """``(caption, png)`` for the last searched genotype and each swept epoch's genotype, drawn
    afresh from the genotype files (a PNG of the run may be of an older drawing code)."""
    layout = RunLayout(rec.run_dir)
    jsons = layout.genotype_files()
    if not jsons:
        raise FigureUnavailable(f"no {layout.rel(layout.genotypes)}/{EPOCH_GLOB}.json")
    wanted = {jsons[-1]}
    wanted |= {layout.genotype(e) for e in rec.epoch_scores if layout.genotype(e).exists()}
    out = []
    for path in sorted(wanted):
        png = out_dir / f"{rec.name}_genotype_{path.stem}.png"
        try:
            genotype = Genotype.from_json(path)
        except (OSError, GenotypeError) as exc:
            raise FigureUnavailable(f"{path} not readable ({type(exc).__name__}: {exc})") from None
        genotype.draw(png, write_dot=False)
        out.append((f"{rec.name}: genotype of search {path.stem.replace('_', ' ')}", png))
    return out


def overlays(rec: RunRecord, out_png: pathlib.Path, n_slices: int = 3, batch_size: int = 16) -> pathlib.Path:
    """Image / ground truth / U-Net / IAC on ``n_slices`` slices, one per case as far as the
    cases go (each case's slice with the largest ground-truth area), with a legend naming the
    classes. From ``test_dt`` when the run has one (whole volumes predicted as ``iac predict``
    does), else from the evaluation split's cached slices. Needs the run's data and both models."""
    cfg_path = RunLayout(rec.run_dir).config
    if not cfg_path.exists():
        raise FigureUnavailable(f"no {CONFIG}")
    try:
        cfg = load_experiment(cfg_path)
    except Exception as exc:  # noqa: BLE001 - e.g. a config of another code version
        raise FigureUnavailable(f"{CONFIG} not loadable by this code version ({exc})") from None
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
    models = {}
    for label, path in (("U-Net", unet_path), ("IAC", iac_path)):
        try:
            models[label] = load_unet(path)
        except Exception as exc:  # noqa: BLE001 - e.g. a model saved by an older code version
            raise FigureUnavailable(f"{path} not loadable by this code version ({exc})") from None
    try:  # the run's rule: its classes and its U-Net's output (sigmoids or a softmax)
        rule = LabelRule.for_outputs(prepared.class_values,
                                     int(models["U-Net"].output_shape[-1]),
                                     cfg.evaluation.metric)
    except ValueError as exc:
        raise FigureUnavailable(f"{unet_path}: {exc}") from None
    if prepared.test_cases and cfg.data.format != "npz":
        split = TEST_SPLIT
        shown, class_names = _test_slices(cfg, prepared.test_cases, models, n_slices, batch_size)
    else:
        split = cfg.evaluation.split
        shown, class_names = _cached_slices(prepared, split, models, n_slices, batch_size,
                                             rule)
    columns = ["image", "ground truth", *models]
    fig = _figure(figsize=(2.4 * len(columns), 2.4 * len(shown) + 0.6))
    axes = fig.subplots(len(shown), len(columns), squeeze=False)
    for i, (name, image, masks) in enumerate(shown):
        for j, title in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(image, cmap="gray")
            if j:
                ax.imshow(_colour(masks[title]), alpha=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=7)
    handles = [Patch(facecolor=PALETTE[k % len(PALETTE)], edgecolor="0.3", label=c)
               for k, c in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8,
               title="classes", title_fontsize=8, frameon=False)
    what = "whole volumes predicted as by iac predict" if split == TEST_SPLIT else "cached slices"
    fig.suptitle(f"{rec.name}: {split} ({what}, rule: {rule.metric}), one slice per case")
    fig.tight_layout(rect=(0, 0.6 / (2.4 * len(shown) + 0.6), 1, 1))
    save_figure(fig, out_png, dpi=80)
    return out_png


def _order(areas: dict[str, np.ndarray], n: int) -> list[tuple[str, int]]:
    """``n`` ``(case, slice)`` pairs: each case's largest-area slice, case after case, then
    each case's second largest, ..."""
    ranked = {c: np.argsort(-a, kind="stable") for c, a in areas.items()}
    out = []
    for rank in range(max((len(r) for r in ranked.values()), default=0)):
        out += [(c, int(r[rank])) for c, r in ranked.items() if rank < len(r)]
    return out[:n]


def _cached_slices(prepared, split, models, n_slices, batch_size, rule: LabelRule):
    """``([(row name, image, {column: masks (H, W, K)})], class names)`` of the cached slices of
    ``split``; predictions as ``rule`` makes them (:func:`prediction_masks`)."""
    images, masks, cases = prepared.arrays(split)
    if len(images) == 0:
        raise FigureUnavailable(f"no {split} slices")
    cases = np.asarray(cases)
    area = masks.reshape(len(masks), -1).sum(axis=1)
    index = {c: np.flatnonzero(cases == c) for c in dict.fromkeys(cases.tolist())}
    pick = [int(index[c][s]) for c, s in _order({c: area[i] for c, i in index.items()}, n_slices)]
    x = images[pick]
    preds = {label: prediction_masks(m.predict(x, batch_size=batch_size, verbose=0), rule) > 0
             for label, m in models.items()}
    shown = [(f"{cases[s]} #{s}", x[i, ..., 0],
              {"ground truth": masks[s] > 0.5, **{label: preds[label][i] for label in models}})
             for i, s in enumerate(pick)]
    return shown, list(prepared.class_names)


def _test_slices(cfg, test_cases, models, n_slices, batch_size):
    """As :func:`_cached_slices`, of ``test_dt``: the cases' whole volumes predicted as
    ``iac predict`` does (labels by its rule), shown in RAS orientation, axial slices."""
    prep = Preprocessing.from_data_config(cfg.data)
    known = volume_cases(cfg.data)
    cases = [known[c] for c in sorted(test_cases)[:n_slices] if c in known]
    if not cases:
        raise FigureUnavailable("the test_dt cases are no longer in the dataset")
    loaded = {label: LoadedModel(pathlib.Path(label), keras_predictor(m),
                                 tuple(int(d) for d in m.input_shape[1:]), int(m.output_shape[-1]), m)
              for label, m in models.items()}
    volumes = {}
    for case in cases:
        image, affine = load_nifti(case.image_paths[0], prep.reorient)
        gt, _ = load_nifti(case.label_path, prep.reorient)
        labels = {"ground truth": np.rint(gt).astype(np.int32)}
        for label, model in loaded.items():
            pred, _ = predict_volume(model, case.image_paths, prep, case.modalities, batch_size)
            labels[label] = _canonical(pred, nib.load(str(case.image_paths[0])).affine, prep.reorient)
        volumes[case.case_id] = (image, labels)
    areas = {c: (labels["ground truth"] > 0).sum(axis=(0, 1)) for c, (_, labels) in volumes.items()}
    shown = []
    for case_id, z in _order(areas, n_slices):
        image, labels = volumes[case_id]
        shown.append((f"{case_id} z={z}", np.rot90(image[:, :, z]),
                      {k: np.stack([np.rot90(np.isin(v[:, :, z], vals)) for vals in prep.classes], -1)
                       for k, v in labels.items()}))
    return shown, list(prep.class_names)


def _canonical(labels: np.ndarray, affine: np.ndarray, reorient: bool) -> np.ndarray:
    """``labels`` on the file's grid in the orientation :func:`load_nifti` gives (RAS when
    ``reorient``)."""
    if not reorient:
        return labels
    return np.asarray(nib.as_closest_canonical(nib.Nifti1Image(labels, affine)).dataobj)


PALETTE = np.array([[1, 0, 0], [0, 1, 0], [0, 0.4, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], float)


def prediction_masks(probs, rule: LabelRule) -> np.ndarray:
    """The class masks ``(..., N)`` an overlay shows of probabilities ``(..., N)``: the
    channels the run's scores count (``rule.channels``: with ``labels``, those of the label map
    ``iac predict`` writes, one class per pixel for exclusive classes)."""
    return rule.channels(np.asarray(probs, np.float32))


def _colour(mask: np.ndarray) -> np.ndarray:
    """(H, W, K) booleans -> RGBA, one colour per class (:data:`PALETTE`, later classes drawn
    over earlier ones), transparent background."""
    h, w, k = mask.shape
    rgba = np.zeros((h, w, 4))
    for c in range(k):
        rgba[mask[..., c], :3] = PALETTE[c % len(PALETTE)]
        rgba[mask[..., c], 3] = 1.0
    return rgba
