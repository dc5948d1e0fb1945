"""3D volume -> 2D training slices, as pure NumPy functions (no randomness, no augmentation).

Order per case (Section IV-A): normalise each channel over the whole volume -> optional in-plane
zoom -> one crop box per volume, centred on the labels (or body) -> masks as one binary channel per
class -> keep every slice with foreground plus an evenly spaced share of the empty ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-8


def normalise_mri(volume: np.ndarray, nonzero: bool = False) -> np.ndarray:
    """Z-score; with ``nonzero`` the statistics use the non-zero voxels, the rest become 0."""
    volume = volume.astype(np.float32)
    mask = volume != 0 if nonzero else np.ones(volume.shape, bool)
    if not mask.any():
        return np.zeros_like(volume)
    values = volume[mask]
    out = (volume - values.mean()) / max(float(values.std()), EPS)
    if nonzero:
        out[~mask] = 0.0
    return out.astype(np.float32)


def normalise_ct(
    volume: np.ndarray,
    window: Sequence[float] = (),
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Clip to a HU ``window`` (or the volume's ``percentiles``), then z-score (nnU-Net style).

    The clip range comes from the image alone, never from the labels, so val_dt is normalised
    the way unseen data would be.
    """
    volume = volume.astype(np.float32)
    low, high = window if len(window) == 2 else np.percentile(volume, percentiles)
    clipped = np.clip(volume, low, high)
    return ((clipped - clipped.mean()) / max(float(clipped.std()), EPS)).astype(np.float32)


def body_mask(volume: np.ndarray) -> np.ndarray:
    """Voxels brighter than 10% of the way from the minimum to the 99th percentile."""
    low, high = float(volume.min()), float(np.percentile(volume, 99))
    return volume > low + 0.1 * (high - low)


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


def crop_or_pad(array: np.ndarray, centre: tuple[int, int], size: int, fill: float) -> np.ndarray:
    """The ``size`` x ``size`` window of axes 0, 1 centred on ``centre``; outside is ``fill``."""
    out = np.full((size, size) + array.shape[2:], fill, dtype=array.dtype)
    src, dst = [], []
    for axis in (0, 1):
        start = centre[axis] - size // 2
        a0, a1 = max(start, 0), min(start + size, array.shape[axis])
        src.append(slice(a0, a1))
        dst.append(slice(a0 - start, a1 - start))
    out[dst[0], dst[1]] = array[src[0], src[1]]
    return out


def zoom_in_plane(image: np.ndarray, label: np.ndarray, factor: float):
    """Resample axes 0, 1 by ``factor``: linear for the image, nearest for the labels."""
    if factor == 1.0:
        return image, label
    from scipy import ndimage

    img_zoom = (factor, factor) + (1,) * (image.ndim - 2)
    lab_zoom = (factor, factor) + (1,) * (label.ndim - 2)
    return (ndimage.zoom(image, img_zoom, order=1).astype(np.float32),
            ndimage.zoom(label, lab_zoom, order=0))


def select_slices(has_foreground: np.ndarray, empty_fraction: float) -> np.ndarray:
    """Indices of all foreground slices plus ``round(empty_fraction * #empty)`` empty slices,
    evenly spaced over the empty ones (deterministic)."""
    fg = np.flatnonzero(has_foreground)
    empty = np.flatnonzero(~has_foreground)
    keep = int(round(empty_fraction * len(empty)))
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
    zoom: float = 1.0,
    empty_slice_fraction: float = 0.1,
    ct_window: Sequence[float] = (),
    ct_percentiles: tuple[float, float] = (0.5, 99.5),
    mri_nonzero: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images (S,P,P,C) float32, masks (S,P,P,N) uint8, slice indices (S,))`` of one case.

    ``image`` is ``(X, Y, Z, C)``, ``label`` ``(X, Y, Z)``; axial slices along ``Z``;
    ``modalities[c]`` is ``"CT"`` (CT normalisation) or anything else (MRI z-score).
    """
    body = body_mask(image[..., 0])
    channels = [
        normalise_ct(image[..., c], ct_window, ct_percentiles) if modalities[c] == "CT"
        else normalise_mri(image[..., c], mri_nonzero)
        for c in range(image.shape[-1])
    ]
    norm = np.stack(channels, axis=-1)
    masks = labels_to_channels(label, classes)
    if zoom != 1.0:
        norm, masks = zoom_in_plane(norm, masks, zoom)
        _, body = zoom_in_plane(norm[..., :1], body.astype(np.uint8), zoom)
        body = body.astype(bool)
    centre = crop_centre(norm.shape, masks.any(-1) if crop == "label" else None,
                         body if crop in ("label", "body") else None)
    fill = norm.reshape(-1, norm.shape[-1]).min(axis=0)
    norm = np.stack([crop_or_pad(norm[..., c], centre, patch_size, float(fill[c]))
                     for c in range(norm.shape[-1])], axis=-1)
    masks = crop_or_pad(masks, centre, patch_size, 0)
    keep = select_slices(masks.any(axis=(0, 1, 3)), empty_slice_fraction)
    images = np.ascontiguousarray(np.moveaxis(norm[:, :, keep], 2, 0))
    masks = np.ascontiguousarray(np.moveaxis(masks[:, :, keep], 2, 0))
    return images, masks, keep
