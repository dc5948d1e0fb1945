"""Reading one case's NIfTI volumes: validation, reorientation, label checks.

Every reader ends here, so each bad input is caught once, with the file named: a missing file,
a corrupt or non-NIfTI file, non-finite intensities, image/label shape or affine mismatch
(between the channels of a case too), and label values outside the dataset's set.

The files ``iac predict`` writes are recognised here too (:func:`is_prediction`): every label and
``_probabilities`` NIfTI it writes carries :data:`PREDICTION_TAG` in its header's ``descrip``
field. ``iac predict`` replaces an existing output file only when it carries the tag, and
``iac evaluate-folder`` uses it to tell a prediction folder from a ground-truth folder.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from iac_tf.errors import DataError

AFFINE_TOLERANCE = 1e-3  # mm; stored affines of one case agree to float32 rounding
#: The NIfTI header ``descrip`` of every file ``iac predict`` writes.
PREDICTION_TAG = b"iac_tf prediction"


def is_prediction(path: str | pathlib.Path) -> bool:
    """``path`` is a NIfTI file written by ``iac predict`` (its header carries
    :data:`PREDICTION_TAG`); only the header is read."""

    path = pathlib.Path(path)
    if not path.is_file():
        return False
    try:
        descrip = nib.load(str(path)).header["descrip"]
        return bytes(np.asarray(descrip).item()).rstrip(b"\0 ") == PREDICTION_TAG
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def load_nifti(path: str | pathlib.Path, reorient: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(data, affine)`` of a NIfTI file, optionally reoriented to RAS (closest canonical).

    Raises:
        DataError: the file is missing, not a readable NIfTI, not 3D, or holds NaN/inf.
    """

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise DataError(f"{path}: not a NIfTI file ({type(img).__name__})")
        shape = tuple(img.shape)
        if len(shape) < 3 or any(d != 1 for d in shape[3:]):
            raise DataError(f"{path}: expected a 3D volume, got shape {shape}")
        if reorient:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj)
    except DataError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt / truncated files
        raise DataError(
            f"{path}: corrupt or not a NIfTI file ({type(exc).__name__}: {exc})") from exc
    if data.ndim > 3:  # trailing singleton axes (checked above)
        data = data.reshape(data.shape[:3])
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise DataError(f"{path}: contains NaN or infinite intensities")
    return data, np.asarray(img.affine, dtype=np.float64)


def load_case(
    image_paths: Sequence[pathlib.Path],
    label_path: pathlib.Path,
    allowed_labels: Sequence[int],
    reorient: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image (X,Y,Z,C) float32, label (X,Y,Z) int16, affine)`` of one case, checked.

    Raises:
        DataError: naming the file, for any problem of :func:`load_nifti`, a channel or label
            whose shape or affine differs from the first channel's, or an unknown label value.
    """
    channels = []
    ref_affine = None
    ref_path = None
    for path in image_paths:
        data, affine = load_nifti(path, reorient)
        if ref_affine is None:
            ref_affine, ref_path = affine, path
        else:
            _check_same_grid(path, data.shape, affine, ref_path, channels[0].shape, ref_affine)
        channels.append(data.astype(np.float32, copy=False))
    label, affine = load_nifti(label_path, reorient)
    _check_same_grid(label_path, label.shape, affine, ref_path, channels[0].shape, ref_affine)
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(label == np.round(label)):
            raise DataError(f"{label_path}: label map has non-integer values")
        label = label.astype(np.int64)
    elif label.dtype.itemsize > 4:
        label = label.astype(np.int64)
    if label.size and int(label.max()) > np.iinfo(np.int16).max:
        raise DataError(f"{label_path}: label value {int(label.max())} outside the dataset's set "
                        f"{sorted(allowed_labels)}")
    low = int(label.min())
    if low < 0:
        bad = [low]
    else:  # bincount: much faster than np.unique on a 512x512x500 CT label map
        present = np.flatnonzero(np.bincount(label.reshape(-1)))
        bad = sorted(set(present.tolist()) - {int(v) for v in allowed_labels})
    if bad:
        raise DataError(
            f"{label_path}: label value(s) {bad} outside the dataset's set "
            f"{sorted(allowed_labels)}")
    return np.stack(channels, axis=-1), label.astype(np.int16), ref_affine


def _check_same_grid(path, shape, affine, ref_path, ref_shape, ref_affine) -> None:
    if tuple(shape) != tuple(ref_shape):
        raise DataError(f"{path}: shape {tuple(shape)} differs from {ref_path} {tuple(ref_shape)}")
    if not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE):
        raise DataError(
            f"{path}: affine differs from {ref_path} (max difference "
            f"{np.abs(affine - ref_affine).max():.4g})")
