"""Volumetric scores of a run's models on its evaluation split (``iac run`` / ``iac evaluate``):
each case of ``evaluation.split`` is predicted as a whole volume with ``iac predict``'s code and
scored on the original grid (:mod:`iac_tf.evaluation.volumetric`), next to the slice Dice.

Writes ``evaluation/volumetric_per_case.csv`` (``case, class, <model>_dice, <model>_hd95_mm``
per model) and ``evaluation/volumetric_summary.json`` (per model and class, as
:func:`iac_tf.evaluation.volumetric.summarise`).
"""

from __future__ import annotations

import csv
import logging
import io
import pathlib

import nibabel as nib
import numpy as np

from iac_tf.data.datasets import list_cases
from iac_tf.data.prepare import resolve_paths
from iac_tf.evaluation.volumetric import score_case, summarise
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.predict import predict_volume
from iac_tf.inference.tiling import keras_predictor
from iac_tf.inference.volume import Preprocessing
from iac_tf.files import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def volumetric_scores(cfg, prepared, models: dict, batch_size: int = 32) -> dict | None:
    """``{model: {class: summary}}`` over the cases of ``cfg.evaluation.split`` (None for npz
    datasets, which have no volumes; a line says so)."""
    if cfg.data.format == "npz":
        log.info("volumetric scores skipped: an npz dataset has no volumes")
        return None
    prep = Preprocessing.from_data_config(cfg.data)
    root, _ = resolve_paths(cfg.data)
    wanted = set(prepared.splits["cases"][cfg.evaluation.split])
    cases = [c for c in list_cases(cfg.data.format, root) if c.case_id in wanted]
    loaded = {name: LoadedModel(pathlib.Path(name), keras_predictor(m),
                                tuple(int(d) for d in m.input_shape[1:]),
                                int(m.output_shape[-1]), m) for name, m in models.items()}
    rows = []
    for case in cases:
        gt_img = nib.load(str(case.label_path))
        gt = np.asarray(gt_img.dataobj).round().astype(np.int32)
        spacing = tuple(float(z) for z in gt_img.header.get_zooms()[:3])
        row_of = {}
        for name, model in loaded.items():
            labels, _ = predict_volume(model, case.image_paths, prep,
                                       prep.modalities_of(case.case_id), batch_size)
            for cls, (dice, dist) in zip(prep.class_names,
                                         score_case(labels, gt, prep.classes, spacing)):
                row_of.setdefault(cls, {"case": case.case_id, "class": cls})
                row_of[cls][f"{name}_dice"], row_of[cls][f"{name}_hd95_mm"] = dice, dist
        rows += row_of.values()
    summary = {name: summarise([{"class": r["class"], "dice": r[f"{name}_dice"],
                                 "hd95_mm": r[f"{name}_hd95_mm"]} for r in rows],
                               prep.class_names) for name in loaded}
    out_dir = cfg.layout.evaluation
    fields = ["case", "class"] + [f"{n}_{m}" for n in loaded for m in ("dice", "hd95_mm")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out_dir / "volumetric_per_case.csv", buf.getvalue())
    atomic_write_json(out_dir / "volumetric_summary.json", summary)
    for name, per_class in summary.items():
        text = ", ".join(f"{c}: Dice {s['dice_mean']:.4f}, HD95 {s['hd95_mm_mean']:.2f} mm"
                         for c, s in per_class.items())
        log.info("volumetric (%d %s volume(s)) %s: %s", len(cases), cfg.evaluation.split, name,
                 text)
    return summary
