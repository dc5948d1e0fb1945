"""3D volume -> 2D training slices, as pure NumPy functions (no randomness, no augmentation).

Per case (Section IV-A): intensity statistics of each channel over the whole volume (Eq.-free
nnU-Net style: MRI z-score, CT clip + z-score) -> one in-plane crop box per volume, centred on the
labels (or the body) -> optional in-plane zoom of that box (a fixed factor, ``data.zoom``, or the
volume's header spacing over a target spacing in mm, ``data.spacing``: :func:`zoom_factors`) ->
normalisation with the whole-volume statistics -> masks as one binary channel per class -> every
slice with foreground plus an evenly spaced share of the empty ones. Cropping before zooming and
normalising keeps a 512x512 CT cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

EPS = 1e-8
#: Statistics of larger volumes use every k-th voxel (a fixed stride: deterministic).
SAMPLE_VOXELS = 1_000_000


def _sample(volume: np.ndarray) -> np.ndarray:
    flat = volume.reshape(-1)
    return flat[:: max(1, flat.size // SAMPLE_VOXELS)].astype(np.float64)


def intensity_stats(volume: np.ndarray, modality: str, *, window: Sequence[float] = (),
                    percentiles: tuple[float, float] = (0.5, 99.5),
                    nonzero: bool = False) -> tuple[float, float, float, float]:
    """``(low, high, mean, std)`` of one channel: CT is clipped to ``[low, high]`` (a HU
    ``window`` or the volume's ``percentiles``, from the image alone, never the labels) and
    z-scored; MRI is z-scored (over the non-zero voxels with ``nonzero``), low/high = +-inf."""
    values = _sample(volume)
    if modality == "CT":
        low, high = (window if len(window) == 2 else np.percentile(values, percentiles))
        values = np.clip(values, low, high)
    else:
        low, high = -np.inf, np.inf
        if nonzero:
            values = values[values != 0]
    if values.size == 0:
        return float(low), float(high), 0.0, 1.0
    return float(low), float(high), float(values.mean()), max(float(values.std()), EPS)


def apply_stats(array: np.ndarray, stats: tuple[float, float, float, float],
                keep_zero: bool = False) -> np.ndarray:
    """``(clip(array, low, high) - mean) / std``; with ``keep_zero`` zeros stay 0 (background
    of skull-stripped MRI)."""
    low, high, mean, std = stats
    out = ((np.clip(array.astype(np.float32), low, high) - mean) / std).astype(np.float32)
    if keep_zero:
        out[array == 0] = 0.0
    return out


def normalise_mri(volume: np.ndarray, nonzero: bool = False) -> np.ndarray:
    """Z-score; with ``nonzero`` the statistics use the non-zero voxels, the rest become 0."""
    return apply_stats(volume, intensity_stats(volume, "MRI", nonzero=nonzero), nonzero)


def normalise_ct(volume: np.ndarray, window: Sequence[float] = (),
                 percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Clip to a HU ``window`` (or the volume's ``percentiles``), then z-score (nnU-Net style)."""
    return apply_stats(volume, intensity_stats(volume, "CT", window=window,
                                               percentiles=percentiles))


def body_threshold(volume: np.ndarray) -> float:
    """10% of the way from the minimum to the 99th percentile (air/background below)."""
    values = _sample(volume)
    low, high = float(volume.min()), float(np.percentile(values, 99))
    return low + 0.1 * (high - low)


def body_mask(volume: np.ndarray) -> np.ndarray:
    """Voxels above :func:`body_threshold`."""
    return volume > body_threshold(volume)


def labels_to_channels(label: np.ndarray, classes: Sequence[Sequence[int]]) -> np.ndarray:
    """One binary uint8 channel per class; class ``k`` is the union of the label values
    ``classes[k]`` (regions such as BraTS WT={1,2,3} may overlap)."""
    out = np.zeros(label.shape + (len(classes),), np.uint8)
    for k, values in enumerate(classes):
        out[..., k] = np.isin(label, list(values))
    return out


def crop_centre(shape: Sequence[int], *masks: np.ndarray | None) -> tuple[int, int]:
    """In-plane centre (axes 0, 1) of the bounding box of the first non-empty mask, projected
    over all slices; the image centre when every mask is empty or ``None``."""
    for mask in masks:
        if mask is None:
            continue
        plane = mask.any(axis=tuple(range(2, mask.ndim)))
        if plane.any():
            idx = np.argwhere(plane)
            lo, hi = idx.min(0), idx.max(0)
            return int((lo[0] + hi[0] + 1) // 2), int((lo[1] + hi[1] + 1) // 2)
    return int(shape[0] // 2), int(shape[1] // 2)


def crop_or_pad(array: np.ndarray, centre: tuple[int, int], size: int | tuple[int, int],
                fill: float) -> np.ndarray:
    """The ``size`` x ``size`` window (or ``size[0]`` x ``size[1]``) of axes 0, 1 centred on
    ``centre``; outside is ``fill``."""
    sizes = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    out = np.full(tuple(sizes) + array.shape[2:], fill, dtype=array.dtype)
    src, dst = [], []
    for axis in (0, 1):
        start = centre[axis] - sizes[axis] // 2
        a0, a1 = max(start, 0), min(start + sizes[axis], array.shape[axis])
        src.append(slice(a0, a1))
        dst.append(slice(a0 - start, a1 - start))
    out[dst[0], dst[1]] = array[src[0], src[1]]
    return out


#: Resampling factors this close to 1 are 1 (a header spacing equal to the target up to float
#: rounding keeps the native grid exactly).
UNIT_FACTOR_TOLERANCE = 1e-6


def in_plane_spacing(affine: np.ndarray) -> tuple[float, float]:
    """Voxel size in mm along voxel axes 0 and 1 of an image with ``affine`` (the lengths of
    its first two columns; for a reoriented image, the affine after reorientation)."""
    affine = np.asarray(affine, np.float64)
    sx, sy = np.linalg.norm(affine[:3, :2], axis=0)
    return float(sx), float(sy)


def zoom_factors(zoom: float = 1.0, spacing: Sequence[float] | None = None,
                 voxel_spacing: Sequence[float] | None = None) -> tuple[float, float]:
    """In-plane resampling factors ``(fx, fy)`` of one volume: ``(zoom, zoom)``, or with a
    target ``spacing`` (mm) the volume's ``voxel_spacing / spacing`` per axis (a 0.5 mm voxel to
    a 1 mm target: 0.5). Factors within :data:`UNIT_FACTOR_TOLERANCE` of 1 are 1."""
    if spacing is None:
        return float(zoom), float(zoom)
    if voxel_spacing is None:
        raise ValueError("a target spacing needs the volume's voxel spacing (its affine)")
    factors = [float(v) / float(t) for v, t in zip(voxel_spacing, spacing)]
    return tuple(1.0 if abs(f - 1.0) < UNIT_FACTOR_TOLERANCE else f for f in factors)


def _pair(factor) -> tuple[float, float]:
    if isinstance(factor, (int, float, np.floating, np.integer)):
        return float(factor), float(factor)
    fx, fy = factor
    return float(fx), float(fy)


def zoom_in_plane(image: np.ndarray, label: np.ndarray, factor: float | Sequence[float]):
    """Resample axes 0, 1 by ``factor`` (one number, or ``(fx, fy)``): linear for the image,
    nearest for the labels; the output side is ``round(side * factor)``."""
    fx, fy = _pair(factor)
    if fx == fy == 1.0:
        return image, label

    img_zoom = (fx, fy) + (1,) * (image.ndim - 2)
    lab_zoom = (fx, fy) + (1,) * (label.ndim - 2)
    # grid_mode: voxel edges (not centres) are aligned, so 0.5 maps 2 voxels onto 1 exactly
    return (ndimage.zoom(image, img_zoom, order=1, grid_mode=True, mode="nearest")
            .astype(np.float32),
            ndimage.zoom(label, lab_zoom, order=0, grid_mode=True, mode="nearest"))


def select_slices(has_foreground: np.ndarray, empty_fraction: float) -> np.ndarray:
    """Indices of all foreground slices plus ``round(empty_fraction * #empty)`` empty slices,
    evenly spaced over the empty ones (deterministic)."""
    fg = np.flatnonzero(has_foreground)
    empty = np.flatnonzero(~has_foreground)
    keep = round(empty_fraction * len(empty))
    if keep > 0:
        picks = np.linspace(0, len(empty) - 1, keep).round().astype(int)
        fg = np.union1d(fg, empty[np.unique(picks)])
    return np.sort(fg)


def preprocess_case(
    image: np.ndarray,
    label: np.ndarray,
    classes: Sequence[Sequence[int]],
    modalities: Sequence[str],
    *,
    patch_size: int = 128,
    crop: str = "label",
    zoom: float | Sequence[float] = 1.0,
    empty_slice_fraction: float = 0.1,
    ct_window: Sequence[float] = (),
    ct_percentiles: tuple[float, float] = (0.5, 99.5),
    mri_nonzero: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images (S,P,P,C) float32, masks (S,P,P,N) uint8, slice indices (S,))`` of one case.

    ``image`` is ``(X, Y, Z, C)``, ``label`` ``(X, Y, Z)`` integer; axial slices along ``Z``;
    ``modalities[c]`` is ``"CT"`` (CT normalisation) or anything else (MRI z-score); ``zoom``
    one in-plane factor or ``(fx, fy)`` (:func:`zoom_factors`).
    """
    nonzero = [mri_nonzero and m != "CT" for m in modalities]
    stats = [intensity_stats(image[..., c], modalities[c], window=ct_window,
                             percentiles=ct_percentiles, nonzero=nonzero[c])
             for c in range(image.shape[-1])]
    fg_plane = np.isin(label, [v for vals in classes for v in vals]).any(axis=2)
    body_plane = None
    if crop == "body" or (crop == "label" and not fg_plane.any()):
        body_plane = (image[..., 0] > body_threshold(image[..., 0])).any(axis=2)
    centre = crop_centre(image.shape, fg_plane if crop == "label" else None, body_plane)
    # crop a window that becomes patch_size after zooming, zoom it, then crop exactly
    factors = _pair(zoom)
    window = tuple(patch_size if f == 1.0 else math.ceil(patch_size / f) + 2 for f in factors)
    fill = [float(max(image[..., c].min(), s[0])) for c, s in enumerate(stats)]
    img = np.stack([crop_or_pad(image[..., c], centre, window, fill[c])
                    for c in range(image.shape[-1])], axis=-1)
    lab = crop_or_pad(label, centre, window, 0)
    if factors != (1.0, 1.0):
        img, lab = zoom_in_plane(img, lab, factors)
        mid = (img.shape[0] // 2, img.shape[1] // 2)
        img = crop_or_pad(img, mid, patch_size, 0.0)  # the window covers the patch: no fill
        lab = crop_or_pad(lab, mid, patch_size, 0)
    norm = np.stack([apply_stats(img[..., c], stats[c], nonzero[c])
                     for c in range(img.shape[-1])], axis=-1)
    masks = labels_to_channels(lab, classes)
    keep = select_slices(masks.any(axis=(0, 1, 3)), empty_slice_fraction)
    images = np.ascontiguousarray(np.moveaxis(norm[:, :, keep], 2, 0))
    masks = np.ascontiguousarray(np.moveaxis(masks[:, :, keep], 2, 0))
    return images, masks, keep
