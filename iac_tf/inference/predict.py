"""``iac predict``: NIfTI cases in, label NIfTIs out (same shape, affine and header).

Per case: read the channels (:func:`iac_tf.data.nifti.load_nifti`, reoriented as in training)
-> :func:`~iac_tf.inference.volume.to_slices` (the run's normalisation and zoom or
spacing) -> sliding windows over every axial slice, mirrored (test-time augmentation) and
blended with a Gaussian as nnU-Net (:func:`~iac_tf.inference.tiling.predict_slices`) -> back to
the file's grid (:func:`~iac_tf.inference.volume.from_slices`, ``to_file_orientation``) ->
labels (:func:`~iac_tf.labels.probabilities_to_labels`, the one decision rule of the
tool: the label mode of the run's classes, or the argmax of a softmax over background +
classes when the model has one more output channel than classes
(:meth:`~iac_tf.labels.LabelRule.for_outputs`), so the labels are those every score
of the run counted). Files are written through the writer gate (:func:`iac_tf.files.atomic_path`).

Before the first prediction is written, every input is checked (headers, then every file read
whole: :mod:`iac_tf.inference.inputs`) and so is every output file of every case
(:func:`check_outputs`): an output is never one of the inputs nor inside a run folder, and an
existing file is replaced only if it is a prediction this tool wrote and nobody changed since:
the output folder's manifest (:data:`iac_tf.files.MANIFEST`) lists each file written with its
size and SHA-256, and a file is replaced only while it still matches. (The header's description
field, :data:`PREDICTION_TAG`, says what the file is; it proves nothing, a hand-corrected copy
keeps it.)
"""

from __future__ import annotations

import gzip
import os
import pathlib
import time
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from iac_tf.data.preprocessing import Preprocessing
from iac_tf.data.nifti import PREDICTION_TAG, is_prediction, load_nifti  # noqa: F401  (re-exported)
from iac_tf.diskspace import check_writable_folder
from iac_tf.errors import DataError, UserValueError
from iac_tf.files import RefusedPath, atomic_write_bytes, check_new_or_ours
from iac_tf.run_layout import check_outside_runs
from iac_tf.inference.inputs import (NIFTI_ENDINGS, InputCase, check_case_data, check_cases,
                                     collect_cases)
from iac_tf.labels import LabelRule
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.tiling import STEP_SIZE, check_step_size, predict_slices
from iac_tf.inference.volume import from_slices, to_file_orientation, to_slices

PROBABILITIES_SUFFIX = "_probabilities"


def check_batch_size(batch_size) -> int:
    """``batch_size`` as a positive ``int``, else a ``ValueError`` naming it."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise UserValueError(f"batch_size must be a positive integer (windows per model call), got "
                         f"{batch_size!r}")
    return int(batch_size)


def predict_volume(model: LoadedModel, paths: Sequence[pathlib.Path], prep: Preprocessing,
                   modalities: Sequence[str], batch_size: int = 32,
                   step_size: float = STEP_SIZE, tta: bool = True,
                   rule: LabelRule | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (X,Y,Z), probabilities (X,Y,Z,N))`` of one case on its files' own grid;
    ``step_size`` and ``tta`` as :func:`~iac_tf.inference.tiling.predict_slices` (Gaussian
    blending of the windows); the labels by ``rule`` (default: the decision rule of
    ``prep.classes`` for the model's outputs, :func:`model_rule`)."""
    batch_size = check_batch_size(batch_size)
    loaded = [load_nifti(p, prep.reorient) for p in paths]
    image = np.stack([data.astype(np.float32, copy=False) for data, _ in loaded], axis=-1)
    slices, fill = to_slices(image, modalities, prep, affine=loaded[0][1])
    patch = model.input_shape[0]
    probs = predict_slices(model.predict, slices, patch, fill, model.num_classes,
                           batch_size=batch_size, step_size=step_size, tta=tta)
    probs = from_slices(probs, image.shape[:3])
    probs = to_file_orientation(probs, nib.load(str(paths[0])).affine, prep.reorient)
    rule = model_rule(model, prep) if rule is None else rule
    return rule.labels(probs), probs


def model_rule(model: LoadedModel, prep: Preprocessing) -> LabelRule:
    """The decision rule of ``model`` for the run's classes: ``N`` sigmoid channels (the label
    mode of the classes) or ``N + 1`` softmax channels (argmax over background + classes);
    any other count is a :class:`~iac_tf.errors.DataError` naming the model file."""
    try:
        return LabelRule.for_outputs(prep.classes, model.num_classes)
    except ValueError as exc:
        raise DataError(f"{model.path}: the model does not suit the run's dataset, classes "
                        f"{list(prep.class_names)}: {exc}") from None


def _save_nifti(array: np.ndarray, reference, path: pathlib.Path) -> None:
    """Write ``array`` with the affine and header of ``reference`` (a nibabel image), atomically."""
    header = reference.header.copy()
    header.set_data_dtype(array.dtype)
    img = type(reference)(array, reference.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["descrip"] = PREDICTION_TAG
    if array.ndim == 4:
        img.header.set_intent("vector")
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1)  # nibabel's default level
    atomic_write_bytes(path, data, what="a prediction")  # through the writer gate


def _as_file(output: pathlib.Path) -> bool:
    """``OUTPUT`` names one file (ends in .nii[.gz] and is not an existing folder)."""
    return output.name.endswith(NIFTI_ENDINGS) and not output.is_dir()


def output_path(output: pathlib.Path, case_id: str, single: bool) -> pathlib.Path:
    """``OUTPUT/CASE.nii.gz``; a single case may name its file (``OUTPUT`` ends in .nii[.gz])."""
    if single and _as_file(output):
        return output
    return output / f"{case_id}.nii.gz"


def probabilities_path(target: pathlib.Path) -> pathlib.Path:
    """``CASE_probabilities.nii.gz`` beside the label file ``target``."""
    return target.with_name(target.name.split(".nii")[0] + PROBABILITIES_SUFFIX + ".nii.gz")


def check_outputs(cases: Sequence[InputCase], output: str | os.PathLike,
                  save_probabilities: bool = False) -> list[tuple[pathlib.Path, ...]]:
    """The output files of every case (``(labels, probabilities)`` or ``(labels,)``), checked
    before anything is written.

    Raises:
        RefusedPath: an output file is one of the inputs, exists and is not a prediction this
            tool wrote (or was changed since), or two cases would write the same file;
            ``OUTPUT`` is an existing file that is not a NIfTI name or lies in a run folder.
        DataError: ``OUTPUT`` names one NIfTI file but the inputs hold several cases.
        OSError: the output folder cannot be written.
    """
    output = pathlib.Path(output)
    if _as_file(output) and len(cases) > 1:
        names = ", ".join(c.case_id for c in cases[:5]) + (", ..." if len(cases) > 5 else "")
        raise DataError(f"{output}: one NIfTI file cannot hold the {len(cases)} cases of INPUT "
                        f"({names}); nothing was written. Give an output folder (a name without "
                        ".nii/.nii.gz) as OUTPUT")
    if output.exists() and not output.is_dir() and not _as_file(output):
        raise RefusedPath(f"{output}: is a file, not an output folder; it is left untouched. "
                          "Give a folder or a CASE.nii.gz name as OUTPUT")
    check_outside_runs(output if not _as_file(output) else output.parent, "a prediction",
                       "an OUTPUT (the last argument)", holds=False)
    single = len(cases) == 1
    inputs = {}
    for case in cases:
        for path in case.paths:
            st = path.stat()
            inputs[(st.st_dev, st.st_ino)] = path
    targets, seen = [], {}
    for case in cases:
        label = output_path(output, case.case_id, single)
        files = (label, probabilities_path(label)) if save_probabilities else (label,)
        for target in files:
            key = os.path.normcase(os.path.abspath(target))
            if key in seen:
                raise RefusedPath(f"{target}: cases {seen[key]} and {case.case_id} would both be "
                                  "written to this file; nothing was written. Rename one of "
                                  "the input cases")
            seen[key] = case.case_id
            try:
                st = target.stat()
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) in inputs:
                source = inputs[(st.st_dev, st.st_ino)]
                what = "one of the inputs" if source == target else f"the input {source}"
                raise RefusedPath(f"{target}: is {what}; a prediction never overwrites an "
                                  "input, nothing was written. Give a new file or a folder as "
                                  "OUTPUT (the last argument)")
            check_new_or_ours(target, "a prediction",
                              "Nothing was written; move the file away or give another OUTPUT "
                              "(the last argument)")
        targets.append(files)
    out_dir = {t[0].parent for t in targets}
    for folder in sorted(out_dir):
        check_writable_folder(folder, "the predictions")
    return targets


def predict_cases(model: LoadedModel, inputs: Sequence[str | pathlib.Path],
                  output: str | pathlib.Path, prep: Preprocessing, *, batch_size: int = 32,
                  step_size: float = STEP_SIZE, tta: bool = True,
                  save_probabilities: bool = False, progress: bool = True) -> list[dict]:
    """Predict every case of ``inputs`` into ``output``; returns ``[{case, path, seconds}]``.

    ``output`` is a folder (``CASE.nii.gz`` per case, created if needed) or, for one case, a
    ``.nii``/``.nii.gz`` file name. Nothing is written before every input has been read whole
    and every output file checked (:func:`check_outputs`); earlier predictions of this tool
    are replaced, any other existing file is refused. ``step_size`` (the largest step between
    windows as a fraction of the window, nnU-Net's ``tile_step_size``) and ``tta`` (mirroring
    test-time augmentation) as :func:`~iac_tf.inference.tiling.predict_slices`; both are
    nnU-Net's defaults.

    Raises:
        UserValueError: ``batch_size`` is not a positive integer, ``step_size`` not in (0, 1].
        DataError: a bad input (the file named), or one ``.nii.gz`` OUTPUT for several cases.
        RefusedPath: an output file that is an input or a file this tool did not write.
    """
    batch_size = check_batch_size(batch_size)
    step_size = check_step_size(step_size)
    rule = model_rule(model, prep)
    cases: list[InputCase] = collect_cases(inputs)
    check_cases(cases, model.input_shape[-1])
    targets = check_outputs(cases, output, save_probabilities)
    check_case_data(cases)
    summary = []
    for case, files in tqdm(list(zip(cases, targets)), desc="predicting", unit="case",
                            disable=not progress):
        t0 = time.perf_counter()
        labels, probs = predict_volume(model, case.paths, prep, prep.modalities_of(case.case_id),
                                       batch_size, step_size, tta, rule)
        reference = nib.load(str(case.paths[0]))
        files[0].parent.mkdir(parents=True, exist_ok=True)
        _save_nifti(labels, reference, files[0])
        if save_probabilities:
            _save_nifti(probs.astype(np.float32), reference, files[1])
        summary.append({"case": case.case_id, "path": str(files[0]),
                        "seconds": time.perf_counter() - t0, "shape": list(labels.shape)})
    return summary


def format_summary(summary: list[dict]) -> str:
    lines = [f"{'case':<24}{'shape':>18}{'seconds':>10}"]
    for row in summary:
        lines.append(f"{row['case']:<24}{'x'.join(map(str, row['shape'])):>18}"
                     f"{row['seconds']:>10.2f}")
    total = sum(r["seconds"] for r in summary)
    lines.append(f"{len(summary)} case(s), {total:.2f} s total, "
                 f"{total / max(1, len(summary)):.2f} s per case")
    return "\n".join(lines)
