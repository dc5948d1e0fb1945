"""The recipe of ``iac predict`` around an exported SavedModel, as one runnable function::

    from iac_tf.inference.client import predict_nifti
    labels = predict_nifti("scan_0000.nii.gz", "serving/iac_unet")       # (X, Y, Z) label map
    labels = predict_nifti(array, "serving/iac_unet", affine=affine)     # (X, Y, Z[, C]) + affine

``predict_nifti`` returns the label map ``iac predict`` writes for the same scan and options
(tests/inference/test_client.py checks that they are equal). It needs only NumPy, SciPy,
nibabel, TensorFlow's ``tf.saved_model.load`` and the export folder written by ``iac export``:
``OUT/N/`` (the newest version is used) and ``OUT/preprocessing.json`` (the parameters, under
``preprocessing``). It is written out step by step so that a client of TF Serving can do the
same around the ``serving_default`` signature (replace ``ServedModel.probabilities`` by a
request; the label rule is :func:`iac_tf.labels.probabilities_to_labels`, NumPy only):

1. Read each channel (``CASE_0000``, ``CASE_0001``, ... in channel order); reorient to RAS
   (``nibabel.as_closest_canonical``) if ``reorient``.
2. Per channel, statistics over the WHOLE volume (every k-th voxel if it has more than 10^6,
   ``k = size // 10^6``): CT: ``low, high`` = the HU ``ct_window`` or the ``ct_percentiles``
   of the volume, mean/std of the clipped values; MRI: mean/std (over the non-zero voxels if
   ``nonzero``), no clipping; std at least 1e-8. The padding value of the channel is
   ``max(min(volume), low)``.
3. Zoom in-plane (axes 0, 1) by ``zoom`` (or, with a target ``spacing`` in mm, by the volume's
   voxel size over it, per axis): ``scipy.ndimage.zoom(order=1, grid_mode=True,
   mode="nearest")``.
4. Normalise ``x = (clip(v, low, high) - mean) / std`` (float32; MRI with ``nonzero``: voxels
   that are 0 stay 0); the padding value likewise.
5. Every axial slice (axis 2): pad (centred) to at least ``patch_size`` with the padding value;
   ``patch_size`` windows at nnU-Net's positions for ``step_size`` (default 0.5); each window
   through the model, with ``tta`` also mirrored along each in-plane axis and both (the 4
   probabilities flipped back and averaged); windows blended with nnU-Net's Gaussian importance
   map (sigma = patch / 8, normalised to maximum 1): the weighted sum over the windows divided
   by the summed weights; the padding cut off.
6. Probabilities back onto the volume's grid: zoom undone with ``scipy.ndimage.zoom(order=1,
   grid_mode=True, mode="nearest")`` to exactly ``(X, Y)``, clipped to [0, 1], reoriented back
   to the file's voxel order.
7. Labels from the full-resolution probabilities (not from the graph's ``labels`` output, which
   labels each window before blending and resampling), by the export's ``label_rule``
   (``label_mode``: ``softmax``, the argmax over background + classes, for a softmax U-Net;
   else the rule of the classes).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
from collections.abc import Callable, Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from iac_tf.errors import UserError
from iac_tf.labels import probabilities_to_labels

PREPROCESSING_JSON = "preprocessing.json"
SAMPLE_VOXELS = 1_000_000  # statistics of larger volumes use every k-th voxel
EPS = 1e-8

#: What ``iac export`` writes under ``recipe`` in ``preprocessing.json``: the steps above.
RECIPE = {
    "runnable": "iac_tf.inference.client.predict_nifti(image, export_folder)",
    "statistics": "per channel over the whole volume (every (size // 1e6)-th voxel if larger); "
                  "CT: clip to ct_window or the volume's ct_percentiles, then mean/std; "
                  "MRI: mean/std (non-zero voxels if nonzero); std >= 1e-8",
    "reorient": "nibabel.as_closest_canonical first if reorient; the result back to the file's "
                "voxel order",
    "zoom": "in-plane by zoom, scipy.ndimage.zoom(order=1, grid_mode=True, mode='nearest')",
    "normalise": "(clip(v, low, high) - mean) / std, float32; zeros stay 0 for MRI if nonzero",
    "padding": "each slice centred to at least patch_size, value max(min(volume), low) "
               "normalised",
    "windows": "nnU-Net's positions: n = ceil((L - P) / (P * step_size)) + 1 evenly spaced, "
               "rounded; step_size 0.5",
    "tta": "on: each window also mirrored along H, W and both; the 4 probabilities flipped back "
           "and averaged",
    "blend": "nnU-Net's Gaussian importance map (sigma = patch / 8, max 1): sum of weighted "
             "windows / sum of weights",
    "upsampling": "probabilities back to the volume's in-plane size, scipy.ndimage.zoom(order=1, "
                  "grid_mode=True, mode='nearest'), clipped to [0, 1]",
    "labels": "iac_tf.labels.probabilities_to_labels(probabilities, classes, "
              "label_rule.label_mode) on the full-resolution probabilities (not the graph's "
              "per-window labels output); softmax: the argmax over background + classes",
}


@dataclasses.dataclass
class ServedModel:
    """An export loaded for prediction: ``probabilities(batch (B, P, P, C)) -> (B, P, P, K)``
    (``K``: the classes, or background + classes for a softmax), the parameters of
    ``preprocessing.json`` and the label mode of its ``label_rule`` (``None``: the classes')."""

    probabilities: Callable[[np.ndarray], np.ndarray]
    preprocessing: dict
    path: pathlib.Path
    label_mode: str | None = None

    @property
    def outputs(self) -> int:
        """The probability channels: one per class, one more for a softmax (background)."""
        return len(self.preprocessing["classes"]) + (self.label_mode == "softmax")


def load_export(folder: str | os.PathLike) -> ServedModel:
    """The newest version of an ``iac export`` folder (or a version folder ``OUT/N``) with
    ``tf.saved_model.load``, and its ``preprocessing.json``."""
    from iac_tf._keras import tf  # noqa: PLC0415 - outside iac_tf: import tensorflow as tf

    folder = pathlib.Path(folder)
    versions = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)) if folder.is_dir() else []
    version, root = (versions[-1], folder) if versions else (folder, folder.parent)
    info_path = version / "assets.extra" / PREPROCESSING_JSON  # the version's own recipe
    if not info_path.is_file():
        info_path = root / PREPROCESSING_JSON
    if not (version / "saved_model.pb").is_file() or not info_path.is_file():
        raise UserError(f"{folder}: not an iac export folder (OUT/N/saved_model.pb and "
                        f"OUT/{PREPROCESSING_JSON} expected)")
    info = json.loads(info_path.read_text())
    if "preprocessing" not in info:
        raise UserError(f"{info_path}: no 'preprocessing' parameters (export again with iac "
                        "export from a run folder)")
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]

    def probabilities(batch: np.ndarray) -> np.ndarray:
        out = serve(image=tf.constant(batch, tf.float32))["probabilities"]
        return np.asarray(out, np.float32)

    probabilities.loaded = serve  # keep the loaded object alive
    rule = info.get("label_rule") or {}
    return ServedModel(probabilities, info["preprocessing"], version, rule.get("label_mode"))


# ------------------------------------------------------------------- steps 1-4: one volume in
def read_channels(image, affine, reorient: bool) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: ``(X, Y, Z, C)`` float32 in RAS order (if ``reorient``) and the file's affine."""
    if isinstance(image, np.ndarray):
        if affine is None:
            raise UserError("an array needs its affine (affine=...), as the NIfTI header has it")
        data = image if image.ndim == 4 else image[..., None]
        if reorient:
            data = nib.orientations.apply_orientation(
                data, nib.orientations.io_orientation(affine))
        return np.asarray(data, np.float32), np.asarray(affine)
    paths = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    channels = []
    for path in paths:
        img = nib.load(str(path))
        if reorient:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj)
        channels.append(data.reshape(data.shape[:3]).astype(np.float32, copy=False))
    return np.stack(channels, axis=-1), nib.load(str(paths[0])).affine


def channel_stats(volume: np.ndarray, modality: str, prep: dict) -> tuple[float, ...]:
    """Step 2: ``(low, high, mean, std)`` of one channel."""
    flat = volume.reshape(-1)
    values = flat[:: max(1, flat.size // SAMPLE_VOXELS)].astype(np.float64)
    if modality == "CT":
        window = prep["ct_window"]
        low, high = window if len(window) == 2 else np.percentile(values,
                                                                  prep["ct_percentiles"])
        values = np.clip(values, low, high)
    else:
        low, high = -np.inf, np.inf
        if prep["nonzero"]:
            values = values[values != 0]
    if values.size == 0:
        return float(low), float(high), 0.0, 1.0
    return float(low), float(high), float(values.mean()), max(float(values.std()), EPS)


def normalise(array: np.ndarray, stats: Sequence[float], keep_zero: bool) -> np.ndarray:
    """Step 4: ``(clip(v, low, high) - mean) / std`` in float32; with ``keep_zero`` 0 stays 0."""
    low, high, mean, std = stats
    out = ((np.clip(array.astype(np.float32), low, high) - mean) / std).astype(np.float32)
    if keep_zero:
        out[array == 0] = 0.0
    return out


def voxel_size_in_plane(affine: np.ndarray, reorient: bool) -> tuple[float, float]:
    """The voxel size (mm) along the first two axes of the (reoriented) volume."""
    sizes = np.linalg.norm(np.asarray(affine, np.float64)[:3, :3], axis=0)
    if reorient:
        ornt = nib.orientations.io_orientation(affine)
        out = np.empty(3)
        out[ornt[:, 0].astype(int)] = sizes
        sizes = out
    return float(sizes[0]), float(sizes[1])


def zoom_of(prep: dict, affine: np.ndarray) -> tuple[float, float]:
    """Step 3's in-plane factors: ``zoom`` on both axes, or with a target ``spacing`` (mm) the
    volume's voxel size over it, per axis (factors within 1e-6 of 1 are 1)."""
    spacing = prep.get("spacing")
    if spacing is None:
        return float(prep["zoom"]), float(prep["zoom"])
    target = [float(spacing)] * 2 if np.isscalar(spacing) else [float(v) for v in spacing]
    voxel = voxel_size_in_plane(affine, bool(prep["reorient"]))
    factors = [v / t for v, t in zip(voxel, target)]
    return tuple(1.0 if abs(f - 1.0) < 1e-6 else f for f in factors)


def to_slices(image: np.ndarray, modalities: Sequence[str], prep: dict,
              factors: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-4: normalised slices ``(Z, X', Y', C)`` and the normalised padding value;
    ``factors``: step 3's in-plane zoom (default ``(zoom, zoom)``)."""
    keep_zero = [prep["nonzero"] and m != "CT" for m in modalities]
    stats = [channel_stats(image[..., c], modalities[c], prep) for c in range(image.shape[-1])]
    fill = [float(max(image[..., c].min(), s[0])) for c, s in enumerate(stats)]
    fx, fy = factors if factors is not None else (float(prep["zoom"]),) * 2
    if (fx, fy) != (1.0, 1.0):
        image = ndimage.zoom(image, (fx, fy, 1, 1), order=1, grid_mode=True,
                             mode="nearest").astype(np.float32)
    norm = np.stack([normalise(image[..., c], stats[c], keep_zero[c])
                     for c in range(image.shape[-1])], axis=-1)
    norm_fill = np.array([normalise(np.array([fill[c]], np.float32), stats[c], keep_zero[c])[0]
                          for c in range(len(fill))], np.float32)
    return np.ascontiguousarray(np.moveaxis(norm, 2, 0)), norm_fill


# ----------------------------------------------------------------------- step 5: the windows
def window_starts(length: int, patch: int, step_size: float) -> list[int]:
    """nnU-Net's window positions along one axis (``length >= patch``)."""
    n = int(np.ceil((length - patch) / (patch * step_size))) + 1
    if n == 1:
        return [0]
    return [int(np.round((length - patch) / (n - 1) * i)) for i in range(n)]


def gaussian_weights(patch: int) -> np.ndarray:
    """nnU-Net's Gaussian importance map of a ``patch x patch`` window (maximum 1)."""
    impulse = np.zeros((patch, patch))
    impulse[patch // 2, patch // 2] = 1.0
    gauss = ndimage.gaussian_filter(impulse, [patch / 8, patch / 8], 0, mode="constant", cval=0)
    gauss = (gauss / gauss.max()).astype(np.float32)
    gauss[gauss == 0] = gauss[gauss > 0].min()
    return gauss


def window_probabilities(model: ServedModel, batch: np.ndarray, tta: bool) -> np.ndarray:
    """The model on a batch of windows; with ``tta`` the mean over the 4 mirrorings."""
    total = model.probabilities(batch).astype(np.float32, copy=True)
    if not tta:
        return total
    flips = [c for i in range(2) for c in itertools.combinations((1, 2), i + 1)]
    for axes in flips:
        total += np.flip(model.probabilities(np.ascontiguousarray(np.flip(batch, axes))), axes)
    return total / np.float32(len(flips) + 1)


def predict_slices(model: ServedModel, slices: np.ndarray, fill: np.ndarray, step_size: float,
                   tta: bool, batch_size: int) -> np.ndarray:
    """Step 5: probabilities ``(Z, X', Y', N)`` of the normalised slices."""
    patch = int(model.preprocessing["patch_size"])
    count, height, width, channels = slices.shape
    pad_h, pad_w = max(0, patch - height), max(0, patch - width)
    padded = np.empty((count, height + pad_h, width + pad_w, channels), np.float32)
    padded[...] = fill
    padded[:, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width] = slices
    weight = gaussian_weights(patch)[..., None]
    ys = window_starts(padded.shape[1], patch, step_size)
    xs = window_starts(padded.shape[2], patch, step_size)
    total = np.zeros(padded.shape[:3] + (model.outputs,), np.float32)
    weights = np.zeros((1,) + padded.shape[1:3] + (1,), np.float32)
    for y in ys:
        for x in xs:
            weights[:, y: y + patch, x: x + patch] += weight
    windows = [(s, y, x) for s in range(count) for y in ys for x in xs]
    for i in range(0, len(windows), batch_size):
        chunk = windows[i: i + batch_size]
        batch = np.stack([padded[s, y: y + patch, x: x + patch] for s, y, x in chunk])
        for (s, y, x), p in zip(chunk, window_probabilities(model, batch, tta)):
            total[s, y: y + patch, x: x + patch] += p * weight
    probs = total / weights
    return probs[:, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]


# ------------------------------------------------------------------------- steps 6-7: back
def to_volume(probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Step 6: ``(Z, X', Y', N)`` -> ``(X, Y, Z, N)`` on the (reoriented) volume's grid."""
    probs = np.moveaxis(probs, 0, 2)
    if probs.shape[:2] != tuple(shape[:2]):
        factors = (shape[0] / probs.shape[0], shape[1] / probs.shape[1], 1, 1)
        probs = ndimage.zoom(probs, factors, order=1, grid_mode=True, mode="nearest")
        out = np.zeros(tuple(shape[:3]) + probs.shape[3:], np.float32)
        sx, sy = min(shape[0], probs.shape[0]), min(shape[1], probs.shape[1])
        out[:sx, :sy] = probs[:sx, :sy]
        probs = out
    return np.clip(probs, 0.0, 1.0).astype(np.float32)


def predict_nifti(image, export: str | os.PathLike | ServedModel, *, affine=None,
                  modalities: Sequence[str] | None = None, step_size: float = 0.5,
                  tta: bool = True, batch_size: int = 32) -> np.ndarray:
    """The label map ``iac predict`` writes for ``image`` (the module docstring's steps).

    Args:
        image: a NIfTI path, the channel paths of one case, or an ``(X, Y, Z[, C])`` array with
            its ``affine``.
        export: an ``iac export`` folder (or :func:`load_export` of one, to load it once).
        modalities: per channel ``"CT"`` or an MRI name (one value: every channel); default the
            run's ``modalities``.
        step_size, tta: as ``iac predict --step-size`` / ``--no-tta`` (nnU-Net's defaults).
        batch_size: windows per model call.

    Returns:
        ``(X, Y, Z)`` labels in the input's voxel order, the dataset's label values.
    """
    model = export if isinstance(export, ServedModel) else load_export(export)
    prep = model.preprocessing
    volume, file_affine = read_channels(image, affine, bool(prep["reorient"]))
    modalities = list(modalities or prep["modalities"])
    modalities = ["CT" if m.upper() == "CT" else m for m in modalities]
    if len(modalities) == 1:
        modalities *= volume.shape[-1]
    if len(modalities) != volume.shape[-1]:
        raise UserError(f"{len(modalities)} modalities for {volume.shape[-1]} channels")
    slices, fill = to_slices(volume, modalities, prep, zoom_of(prep, file_affine))
    probs = to_volume(predict_slices(model, slices, fill, float(step_size), tta, batch_size),
                      volume.shape[:3])
    if prep["reorient"]:
        ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                               nib.orientations.io_orientation(file_affine))
        probs = nib.orientations.apply_orientation(probs, ornt)
    return probabilities_to_labels(probs, prep["classes"], model.label_mode)
