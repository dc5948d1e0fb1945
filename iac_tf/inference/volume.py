"""One volume through the run's training preprocessing and back (pure NumPy + nibabel).

Training (:func:`iac_tf.data.preprocess.preprocess_case`) reads a case reoriented to RAS (when
the dataset's ``reorient`` says so), computes the intensity statistics of each channel over the
whole volume, crops a ``patch_size`` window around the labels, zooms it in-plane (by ``zoom``, or
by the volume's header spacing over the target ``spacing`` in mm) and normalises it. At inference
there are no labels, so instead of one crop every slice is covered by sliding windows
(:mod:`iac_tf.inference.tiling`); everything else is the same function calls with the same
parameters (read from the run's ``config.yaml``). Afterwards every spatial step is undone: the
zoom or spacing (probabilities resampled linearly onto the volume's own grid), the padding, and
the reorientation (back to the file's own voxel order), so the label volume has the input's
shape and affine.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from iac_tf.data.preprocess import apply_stats, intensity_stats, zoom_in_plane
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.errors import DataError


def to_slices(image: np.ndarray, modalities: Sequence[str], prep: Preprocessing,
              affine: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(slices (Z, X', Y', C) float32, fill (C,))`` of a reoriented ``(X, Y, Z, C)`` image:
    whole-volume statistics, in-plane zoom (``prep.zoom``, or the factors of the image's
    ``affine`` for a target ``prep.spacing``), normalisation, exactly as in training; ``fill`` is
    the normalised value training pads with."""
    if len(modalities) != image.shape[-1]:
        raise DataError(f"{len(modalities)} modalities for {image.shape[-1]} channels")
    nonzero = [prep.nonzero and m != "CT" for m in modalities]
    stats = [intensity_stats(image[..., c], modalities[c], window=prep.ct_window,
                             percentiles=prep.ct_percentiles, nonzero=nonzero[c])
             for c in range(image.shape[-1])]
    fill = [float(max(image[..., c].min(), s[0])) for c, s in enumerate(stats)]
    factors = prep.zoom_factors(affine)
    if factors != (1.0, 1.0):
        image, _ = zoom_in_plane(image, np.zeros(image.shape[:2] + (1,), np.uint8), factors)
    norm = np.stack([apply_stats(image[..., c], stats[c], nonzero[c])
                     for c in range(image.shape[-1])], axis=-1)
    norm_fill = np.array([apply_stats(np.array([fill[c]], np.float32), stats[c], nonzero[c])[0]
                          for c in range(len(fill))], np.float32)
    return np.ascontiguousarray(np.moveaxis(norm, 2, 0)), norm_fill


def from_slices(probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Probabilities ``(Z, X', Y', N)`` back onto the reoriented grid ``shape = (X, Y, Z)``:
    ``(X, Y, Z, N)`` (the zoom undone by linear resampling, edges aligned as in training)."""
    probs = np.moveaxis(probs, 0, 2)
    if probs.shape[:2] != tuple(shape[:2]):
        factors = (shape[0] / probs.shape[0], shape[1] / probs.shape[1], 1, 1)
        probs = ndimage.zoom(probs, factors, order=1, grid_mode=True, mode="nearest")
        # round() in ndimage.zoom hits the shape; guard against float rounding anyway
        out = np.zeros(tuple(shape[:3]) + probs.shape[3:], np.float32)
        sx, sy = min(shape[0], probs.shape[0]), min(shape[1], probs.shape[1])
        out[:sx, :sy] = probs[:sx, :sy]
        probs = out
    return np.clip(probs, 0.0, 1.0).astype(np.float32)


def to_file_orientation(array: np.ndarray, file_affine: np.ndarray, reoriented: bool
                        ) -> np.ndarray:
    """Undo :func:`nibabel.as_closest_canonical`: RAS voxel order -> the file's voxel order."""
    if not reoriented:
        return array
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                           nib.orientations.io_orientation(file_affine))
    return nib.orientations.apply_orientation(array, ornt)


def case_id_of(path: pathlib.Path) -> str:
    """``CASE`` of ``CASE_0000.nii.gz`` / ``CASE.nii``."""
    name = path.name
    for ending in (".nii.gz", ".nii"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    stem, _, suffix = name.rpartition("_")
    return stem if stem and len(suffix) == 4 and suffix.isdigit() else name
