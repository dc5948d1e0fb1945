"""``iac predict``: NIfTI cases in, label NIfTIs out (same shape, affine and header).

Per case: read the channels (:func:`iac_tf.data.nifti.load_nifti`, reoriented as in training)
-> :func:`~iac_tf.inference.volume.to_slices` (the run's normalisation and zoom) -> sliding
windows over every axial slice (:func:`~iac_tf.inference.tiling.predict_slices`) -> back to the
file's grid (:func:`~iac_tf.inference.volume.from_slices`, ``to_file_orientation``) -> labels
(:func:`~iac_tf.inference.labels.probabilities_to_labels`). Files are written through a temp
file and ``os.replace``; every case is checked from its headers before the first is predicted.
"""

from __future__ import annotations

import gzip
import pathlib
import time
from collections.abc import Sequence

import numpy as np

from iac_tf.data.config import DataError
from iac_tf.data.nifti import load_nifti
from iac_tf.files import atomic_path
from iac_tf.inference.inputs import InputCase, check_cases, collect_cases
from iac_tf.inference.labels import probabilities_to_labels
from iac_tf.inference.model_source import LoadedModel
from iac_tf.inference.tiling import predict_slices
from iac_tf.inference.volume import Preprocessing, from_slices, to_file_orientation, to_slices

PROBABILITIES_SUFFIX = "_probabilities"


def predict_volume(model: LoadedModel, paths: Sequence[pathlib.Path], prep: Preprocessing,
                   modalities: Sequence[str], batch_size: int = 32, overlap: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (X,Y,Z), probabilities (X,Y,Z,N))`` of one case on its files' own grid."""
    import nibabel as nib

    channels = [load_nifti(p, prep.reorient)[0].astype(np.float32, copy=False) for p in paths]
    image = np.stack(channels, axis=-1)
    slices, fill = to_slices(image, modalities, prep)
    patch = model.input_shape[0]
    probs = predict_slices(model.predict, slices, patch, fill, model.num_classes,
                           batch_size=batch_size, overlap=overlap)
    probs = from_slices(probs, image.shape[:3])
    probs = to_file_orientation(probs, nib.load(str(paths[0])).affine, prep.reorient)
    return probabilities_to_labels(probs, prep.classes), probs


def _save_nifti(array: np.ndarray, reference, path: pathlib.Path) -> None:
    """Write ``array`` with the affine and header of ``reference`` (a nibabel image), atomically."""
    header = reference.header.copy()
    header.set_data_dtype(array.dtype)
    img = type(reference)(array, reference.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    if array.ndim == 4:
        img.header.set_intent("vector")
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1)  # nibabel's default level
    with atomic_path(path) as tmp:  # the temp name ends in .tmp.gz: write the bytes ourselves
        tmp.write_bytes(data)


def output_path(output: pathlib.Path, case_id: str, single: bool) -> pathlib.Path:
    """``OUTPUT/CASE.nii.gz``; a single case may name its file (``OUTPUT`` ends in .nii[.gz])."""
    if single and output.name.endswith((".nii", ".nii.gz")):
        return output
    return output / f"{case_id}.nii.gz"


def predict_cases(model: LoadedModel, inputs: Sequence[str | pathlib.Path],
                  output: str | pathlib.Path, prep: Preprocessing, *, batch_size: int = 32,
                  overlap: float = 0.5, save_probabilities: bool = False,
                  progress: bool = True) -> list[dict]:
    """Predict every case of ``inputs`` into ``output``; returns ``[{case, path, seconds}]``.

    Raises:
        DataError: a bad input (the file named), before anything is written where possible.
    """
    import nibabel as nib
    from tqdm.auto import tqdm

    if model.num_classes != len(prep.classes):
        raise DataError(f"{model.path}: the model has {model.num_classes} output channels, the "
                        f"run's dataset {len(prep.classes)} classes {list(prep.class_names)}")
    cases: list[InputCase] = collect_cases(inputs)
    check_cases(cases, model.input_shape[-1])
    output = pathlib.Path(output)
    single = len(cases) == 1
    out_dir = output.parent if output_path(output, "x", single) == output else output
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    for case in tqdm(cases, desc="predicting", unit="case", disable=not progress):
        t0 = time.perf_counter()
        labels, probs = predict_volume(model, case.paths, prep, prep.modalities_of(case.case_id),
                                       batch_size, overlap)
        reference = nib.load(str(case.paths[0]))
        target = output_path(output, case.case_id, single)
        _save_nifti(labels, reference, target)
        if save_probabilities:
            name = target.name.split(".nii")[0] + PROBABILITIES_SUFFIX + ".nii.gz"
            _save_nifti(probs.astype(np.float32), reference, target.with_name(name))
        summary.append({"case": case.case_id, "path": str(target),
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
