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

import dataclasses
import pathlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from iac_tf.data.config import DataConfig, DataError
from iac_tf.data.datasets import DATASETS, list_cases, read_dataset_json
from iac_tf.data.preprocess import (apply_stats, in_plane_spacing, intensity_stats, zoom_factors,
                                    zoom_in_plane)
from iac_tf.data.prepare import resolve_paths
from iac_tf.run_layout import CONFIG


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The training preprocessing of a run, as inference needs it.

    Args:
        patch_size: the model's input side (``data.patch_size``).
        zoom: in-plane zoom factor (``data.zoom``).
        spacing: target in-plane spacing in mm (``data.spacing``), ``None``: ``zoom`` applies.
        reorient: reorient to RAS before slicing (``data.reorient`` or the dataset's default).
        nonzero: MRI z-score over non-zero voxels (``data.mri_nonzero`` or the dataset's default).
        ct_window, ct_percentiles: CT clipping (``data.ct_window``, ``data.ct_percentiles``).
        class_names, classes: the mask channels and their label values (``dataset.json``).
        modalities: per channel, ``"CT"`` or an MRI name, for cases the dataset does not know.
        case_modalities: per known case id (``dataset.json``'s ``case_modality`` and the
            dataset's own cases), its modalities.
    """

    patch_size: int
    zoom: float
    reorient: bool
    nonzero: bool
    ct_window: tuple[float, ...]
    ct_percentiles: tuple[float, float]
    class_names: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]
    modalities: tuple[str, ...]
    case_modalities: dict = dataclasses.field(default_factory=dict)
    spacing: tuple[float, float] | None = None

    def zoom_factors(self, affine: np.ndarray | None = None) -> tuple[float, float]:
        """The in-plane resampling factors of a volume with ``affine`` (after reorientation),
        as training computed them (:func:`iac_tf.data.preprocess.zoom_factors`)."""
        if self.spacing is not None and affine is None:
            raise DataError(f"resampling to spacing {list(self.spacing)} mm needs the volume's "
                            "affine")
        return zoom_factors(self.zoom, self.spacing,
                            None if affine is None else in_plane_spacing(affine))

    def modalities_of(self, case_id: str) -> tuple[str, ...]:
        return tuple(self.case_modalities.get(case_id, self.modalities))

    @classmethod
    def from_record(cls, record: dict, modalities: Sequence[str] | None = None) -> Preprocessing:
        """The preprocessing a run recorded at training time (``data_record.json``'s
        ``preprocessing``), so no ``dataset.json`` is read again; ``modalities`` as in
        :meth:`from_data_config`."""
        prep = cls(
            patch_size=int(record["patch_size"]), zoom=float(record["zoom"]),
            reorient=bool(record["reorient"]), nonzero=bool(record["nonzero"]),
            ct_window=tuple(record["ct_window"]), ct_percentiles=tuple(record["ct_percentiles"]),
            class_names=tuple(record["class_names"]),
            classes=tuple(tuple(int(v) for v in values) for values in record["classes"]),
            modalities=tuple(record["modalities"]),
            case_modalities={k: tuple(v) for k, v in (record.get("case_modalities") or {}).items()},
            spacing=(None if record.get("spacing") is None
                     else tuple(float(v) for v in record["spacing"])))
        if not modalities:
            return prep
        return dataclasses.replace(prep, modalities=_override(modalities, len(prep.modalities)),
                                   case_modalities={})

    @classmethod
    def from_data_config(cls, cfg: DataConfig, modalities: Sequence[str] | None = None
                         ) -> Preprocessing:
        """Read classes and channel modalities from the dataset ``cfg.root`` names.

        ``modalities`` (e.g. ``["CT"]``) overrides the modality of every channel of every case.
        """
        if cfg.format == "npz":
            raise DataError(f"{cfg.root}: runs trained on an npz dataset have no volume "
                            "preprocessing to apply; predict needs a NIfTI-based dataset")
        root, _ = resolve_paths(cfg)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder of the run (data.root in its {CONFIG}) "
                            "not found; predict reads the classes and modalities from it")
        spec = DATASETS[cfg.format]
        classes = spec.classes(root, cfg.label_mode)
        cases = list_cases(cfg.format, root)
        known = {c.case_id: c.modalities for c in cases}
        default = cases[0].modalities
        if cfg.format == "nnunet":
            meta = read_dataset_json(root)
            channels = meta.get("channel_names") or meta.get("modality") or {"0": "MRI"}
            default = tuple("CT" if str(channels[i]).upper() == "CT" else str(channels[i])
                            for i in sorted(channels, key=int))
        if modalities:
            default, known = _override(modalities, len(default)), {}
        return cls(
            patch_size=cfg.patch_size, zoom=cfg.zoom,
            reorient=spec.reorient if cfg.reorient is None else cfg.reorient,
            nonzero=spec.mri_nonzero if cfg.mri_nonzero is None else cfg.mri_nonzero,
            ct_window=tuple(cfg.ct_window), ct_percentiles=tuple(cfg.ct_percentiles),
            class_names=tuple(classes.names), classes=tuple(classes.values),
            modalities=tuple(default), case_modalities=known, spacing=cfg.spacing)


def _override(modalities: Sequence[str], channels: int) -> tuple[str, ...]:
    """``--modality`` values for ``channels`` channels (one value: every channel)."""
    modalities = tuple("CT" if m.upper() == "CT" else m for m in modalities)
    if len(modalities) == 1:
        modalities = modalities * channels
    if len(modalities) != channels:
        raise DataError(f"--modality: {len(modalities)} values for {channels} channels")
    return modalities


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
