"""``INPUT`` of ``iac predict``: a NIfTI volume, the channel files of one case, or a folder in
nnU-Net ``imagesTs`` layout (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, ...), as cases.

:func:`check_cases` validates every case from the headers before anything is predicted (so a bad
case fails the command before any output is written): readable NIfTI, 3D, the model's channel
count, one grid (shape and affine) for all channels of a case, at least one voxel, and a size that
fits in memory. :func:`check_case_data` then reads
every file whole: a truncated or corrupt file, or NaN / infinite voxels, fail the command before
the first prediction is written.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from iac_tf.data.nifti import AFFINE_TOLERANCE
from iac_tf.errors import DataError
from iac_tf.inference.volume import case_id_of

NIFTI_ENDINGS = (".nii.gz", ".nii")
_CHANNEL = re.compile(r"(.+)_(\d{4})\.nii(\.gz)?")


@dataclasses.dataclass(frozen=True)
class InputCase:
    case_id: str
    paths: tuple[pathlib.Path, ...]  # one per channel, in channel order


def collect_cases(inputs: Sequence[str | pathlib.Path]) -> list[InputCase]:
    """Cases of ``inputs``: one folder (nnU-Net ``imagesTs`` layout) or the channel files of one
    case (in channel order)."""
    paths = [pathlib.Path(p) for p in inputs]
    if not paths:
        raise DataError("no input given")
    if len(paths) == 1 and paths[0].is_dir():
        return _folder_cases(paths[0])
    for path in paths:
        if path.is_dir():
            raise DataError(f"{path}: a folder must be the only INPUT")
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        if not path.name.endswith(NIFTI_ENDINGS):
            raise DataError(f"{path}: not a NIfTI file name (.nii or .nii.gz)")
    return [InputCase(case_id_of(paths[0]), tuple(paths))]


def _folder_cases(folder: pathlib.Path) -> list[InputCase]:
    files = sorted(p for p in folder.iterdir() if p.name.endswith(NIFTI_ENDINGS))
    if not files:
        raise DataError(f"{folder}: no NIfTI files (expected CASE_0000.nii.gz, ...)")
    grouped: dict[str, dict[int, pathlib.Path]] = {}
    for path in files:
        match = _CHANNEL.fullmatch(path.name)
        if not match:
            raise DataError(f"{path}: not named CASE_XXXX.nii[.gz] (nnU-Net imagesTs layout: "
                            "the 4-digit suffix is the channel)")
        grouped.setdefault(match.group(1), {})[int(match.group(2))] = path
    cases = []
    for case, channels in sorted(grouped.items()):
        missing = sorted(set(range(max(channels) + 1)) - set(channels))
        if missing:
            raise DataError(f"{folder / case}_{missing[0]:04d}.nii.gz: missing channel "
                            f"{missing[0]} of case {case}")
        cases.append(InputCase(case, tuple(channels[i] for i in sorted(channels))))
    return cases


def check_cases(cases: Sequence[InputCase], channels: int) -> None:
    """Header checks of every case (see the module docstring); errors name the file."""
    for case in cases:
        if len(case.paths) != channels:
            raise DataError(f"{case.paths[0]}: case {case.case_id} has {len(case.paths)} "
                            f"channel file(s), the model expects {channels}")
        ref = None
        for path in case.paths:
            try:
                img = nib.load(str(path))
                shape, affine = img.shape, np.asarray(img.affine)
            except Exception as exc:  # nibabel raises many types for corrupt files
                raise DataError(f"{path}: unreadable or not a NIfTI file "
                                f"({type(exc).__name__}: {exc})") from exc
            if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
                raise DataError(f"{path}: not a NIfTI file ({type(img).__name__})")
            if len(shape) == 4 and shape[-1] == 1:
                shape = shape[:3]
            if len(shape) != 3:
                raise DataError(f"{path}: expected a 3D volume, got shape {tuple(shape)} "
                                "(give each channel as its own CASE_XXXX file)")
            if min(shape) < 1:
                raise DataError(f"{path}: the volume has no voxels (shape {tuple(shape)})")
            check_volume_fits(path, shape, img.get_data_dtype().itemsize)
            if ref is None:
                ref = (path, shape, affine)
            elif tuple(shape) != tuple(ref[1]):
                raise DataError(f"{path}: shape {tuple(shape)} differs from {ref[0]} "
                                f"{tuple(ref[1])}")
            elif not np.allclose(affine, ref[2], atol=AFFINE_TOLERANCE):
                raise DataError(f"{path}: affine differs from {ref[0]} (max difference "
                                f"{np.abs(affine - ref[2]).max():.4g}): channels must share "
                                "one grid")


def memory_bytes() -> int:
    """This machine's physical memory in bytes (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_volume_fits(path: pathlib.Path, shape, itemsize: int) -> None:
    """Raise :class:`DataError` if the volume a header describes cannot be held in memory:
    its stored data, or one float32 channel of it, is larger than the machine's memory (a
    damaged or hostile header, e.g. 4000^3 voxels), before anything tries to read it."""
    voxels = int(np.prod([int(d) for d in shape], dtype=np.float64))
    needed = voxels * max(4, int(itemsize))
    total = memory_bytes()
    if total and needed > total:
        raise DataError(f"{path}: the header describes {'x'.join(map(str, shape))} voxels "
                        f"({needed / 1e9:.1f} GB as float32), more than this machine's "
                        f"{total / 1e9:.1f} GB of memory; a damaged header or not a volume "
                        "this tool can predict")


def check_case_data(cases: Sequence[InputCase]) -> None:
    """Read every file of every case whole: its data must decompress completely and hold only
    finite values. Errors name the file and the problem."""
    for case in cases:
        for path in case.paths:
            try:
                data = np.asarray(nib.load(str(path)).dataobj)
            except MemoryError:
                raise
            except Exception as exc:  # truncated gzip (EOFError), zlib.error, short file ...
                raise DataError(f"{path}: cannot read the whole volume, the file is truncated "
                                f"or corrupt ({type(exc).__name__}: {exc})") from exc
            if np.issubdtype(data.dtype, np.inexact):
                bad = int(data.size - np.count_nonzero(np.isfinite(data)))
                if bad:
                    raise DataError(f"{path}: {bad} NaN/inf voxels (of {data.size}); replace them "
                                    "(e.g. by the background value) before predicting")
