"""Volumetric scores of a run's models on one split (``iac run`` / ``iac evaluate``): each case
of the split is predicted as a whole volume with ``iac predict``'s code (its Gaussian blending,
and its mirroring unless ``evaluation.tta`` is false) and scored on the original grid
(:mod:`iac_tf.evaluation.volumetric`), next to the slice Dice. The scored masks follow the run's
decision rule (:class:`~iac_tf.labels.LabelRule`): the label volume ``iac predict``
writes (``labels``) or each output channel alone (``paper_channels``).

For ``evaluation.split`` (val_dt by default) this writes ``evaluation/volumetric_per_case.csv``
(``split, metric, case, class, <model>_dice, <model>_hd95_mm`` per model; the writer and
schema of :func:`iac_tf.evaluation.volumetric.write_per_case`) and
``evaluation/volumetric_summary.json`` (per model and class, the writer and schema of
:func:`iac_tf.evaluation.volumetric.write_volumetric_summary`, with the split and the decision
rule); for any other split (``test_dt``) the same two files in ``evaluation/<split>/``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from iac_tf.data.prepare import volume_cases
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.errors import DataError
from iac_tf.evaluation.volumetric import (per_case_row, score_case, score_channels, summarise,
                                          write_per_case, write_volumetric_summary)
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.predict import predict_volume
from iac_tf.inference.tiling import keras_predictor
from iac_tf.labels import LabelRule
from iac_tf.run_layout import VOLUMETRIC_CSV, RunLayout

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VolumeScores:
    """Whole-volume scores of several models on the cases of one split.

    Attributes:
        split: the split scored (``val_dt``, ``test_dt``, ...).
        cases: the case ids, sorted.
        class_names: the classes, in mask-channel order.
        models: the model names, in the order given.
        rows: one per case and class: ``case``, ``class``, ``<model>_dice``, ``<model>_hd95_mm``.
        summary: ``{model: {class: summary}}`` (:func:`~iac_tf.evaluation.volumetric.summarise`;
            ``volumetric_summary.json`` holds it under ``models``, each model's classes under
            ``classes``).
        rule: the decision rule the masks were scored with (``LabelRule.record()``).
    """

    split: str
    cases: tuple[str, ...]
    class_names: tuple[str, ...]
    models: tuple[str, ...]
    rows: tuple[dict, ...]
    summary: dict
    rule: dict = dataclasses.field(default_factory=dict)

    def dice_by_case(self) -> dict[str, dict[str, np.ndarray]]:
        """``{model: {case: Dice per class}}`` (NaN where the class is absent from both the
        ground truth and the prediction), the form of the slice scores of
        :func:`iac_tf.evaluation.report.compare_scores`."""
        out = {}
        for name in self.models:
            per_case = {c: np.full(len(self.class_names), np.nan) for c in self.cases}
            for row in self.rows:
                per_case[row["case"]][self.class_names.index(row["class"])] = row[f"{name}_dice"]
            out[name] = per_case
        return out


def volumetric_scores(cfg, prepared, models: dict, batch_size: int = 32,
                      split: str | None = None, case_ids: Sequence[str] | None = None,
                      out_dir: pathlib.Path | None = None,
                      rule: LabelRule | None = None) -> dict | None:
    """``{model: {class: summary}}`` over the cases of ``split`` (default
    ``cfg.evaluation.split``; the cases ``prepared.splits["cases"][split]`` unless ``case_ids``
    is given), written to ``out_dir`` (default ``evaluation/``, ``evaluation/<split>/`` for a
    split other than ``evaluation.split``). None for npz datasets, which have no volumes (a line
    says so), and for a split without cases."""
    scores = score_volumes(cfg, models, split or cfg.evaluation.split, prepared=prepared,
                           case_ids=case_ids, out_dir=out_dir, batch_size=batch_size, rule=rule)
    return None if scores is None else scores.summary


def score_volumes(cfg, models: dict, split: str, *, prepared=None,
                  case_ids: Sequence[str] | None = None, out_dir: pathlib.Path | None = None,
                  batch_size: int = 32, rule: LabelRule | None = None) -> VolumeScores | None:
    """Predict every case of ``split`` (``case_ids``, else those of ``prepared.splits``) with
    every model of ``models`` (name -> Keras model) as a whole volume, score Dice and HD95 (mm)
    per case and class against its label on the original grid, write the per-case CSV and the
    summary JSON to ``out_dir`` (see :func:`volumetric_scores`) and log one line per model.
    ``rule``: the run's decision rule (``None``: the dataset's classes and the models' outputs
    with ``cfg.evaluation.metric``); ``labels`` scores the label volume ``iac predict`` writes.
    Returns None (nothing written) for an npz dataset or a split without cases."""
    if cfg.data.format == "npz":
        log.info("volumetric scores skipped: an npz dataset has no volumes")
        return None
    if case_ids is None:
        case_ids = prepared.splits["cases"].get(split, [])
    wanted = sorted(set(case_ids))
    if not wanted:
        return None
    known = volume_cases(cfg.data)
    missing = [c for c in wanted if c not in known]
    if missing:
        raise DataError(f"{cfg.data.root}: case(s) {missing[:5]} of {split} are no longer in "
                        "the dataset; prepare the data again (`iac data prepare CONFIG`)")
    cases = [known[c] for c in wanted]
    prep = Preprocessing.from_data_config(cfg.data)
    if rule is None:  # the classes and the models' outputs (sigmoids or a softmax)
        channels = {int(m.output_shape[-1]) for m in models.values()}
        rule = LabelRule.for_outputs(prep.classes, min(channels), cfg.evaluation.metric)
    if rule.classes != tuple(prep.classes):
        raise DataError(f"{cfg.data.root}: the dataset's classes {list(prep.classes)} are not "
                        f"those of the scores' rule {list(rule.classes)}")
    loaded = {name: LoadedModel(pathlib.Path(name), keras_predictor(m),
                                tuple(int(d) for d in m.input_shape[1:]),
                                int(m.output_shape[-1]), m) for name, m in models.items()}
    rows = []
    for case in cases:
        gt_img = nib.load(str(case.label_path))
        gt = np.asarray(gt_img.dataobj).round().astype(np.int32)
        spacing = tuple(float(z) for z in gt_img.header.get_zooms()[:3])
        scores_of: dict[str, dict] = {}  # class -> model -> metrics
        for name, model in loaded.items():
            labels, probs = predict_volume(model, case.image_paths, prep, case.modalities,
                                           batch_size, tta=cfg.evaluation.tta, rule=rule)
            scored = (score_case(labels, gt, prep.classes, spacing) if rule.metric == "labels"
                      else score_channels(rule.channels(probs), gt, prep.classes, spacing))
            for cls, (dice, dist) in zip(prep.class_names, scored):
                scores_of.setdefault(cls, {})[name] = {"dice": dice, "hd95_mm": dist}
        rows += [per_case_row(split, rule.metric, case.case_id, cls, by_model)
                 for cls, by_model in scores_of.items()]
    summary = {name: summarise([{"class": r["class"], "dice": r[f"{name}_dice"],
                                 "hd95_mm": r[f"{name}_hd95_mm"]} for r in rows],
                               prep.class_names) for name in loaded}
    if out_dir is None:
        out_dir = RunLayout.of(cfg).split_evaluation(split, cfg.evaluation.split)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_per_case(out_dir / VOLUMETRIC_CSV, rows, list(loaded))
    write_volumetric_summary(out_dir, summary, prep.class_names, wanted, split=split,
                             rule=rule.record())
    for name, per_class in summary.items():
        text = ", ".join(f"{c}: Dice {s['dice_mean']:.4f}, HD95 {s['hd95_mm_mean']:.2f} mm"
                         for c, s in per_class.items())
        log.info("volumetric (%d %s volume(s), rule %s) %s: %s", len(cases), split,
                 rule.metric, name, text)
    return VolumeScores(split, tuple(wanted), tuple(prep.class_names), tuple(loaded),
                        tuple(rows), summary, rule.record())
