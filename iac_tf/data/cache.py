"""The HDF5 slice cache: one file per dataset and config, written atomically.

Layout of ``<cache_dir>/<format>_<name>_<key[:12]>.h5``:

* ``images``  (S, P, P, C) float32, one chunk per slice (lzf-compressed);
* ``masks``   (S, P, P, N) uint8, one binary channel per class;
* ``case_index`` (S,) int32 into the ``case_ids`` attribute; ``slice_index`` (S,) int32, the
  slice's index along the volume's axial axis; ``class_voxels`` (S, N) int32 per-slice counts;
* attributes ``key``, ``case_ids``, ``patient_ids``, ``class_names``, ``skipped``, ``config``
  (JSON strings).

The key hashes the preprocessing fields of the config, :data:`CACHE_VERSION` and each source
file's path, size and modification time, so any change gives a new file name (a rebuild). The file
is written under a hidden temporary name and renamed only when complete (:mod:`iac_tf.files`),
so a killed build leaves no cache that a later run could mistake for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Iterable

import numpy as np

from iac_tf.files import publish, temp_sibling

CACHE_VERSION = 1


def file_fingerprints(paths: Iterable[pathlib.Path], root: pathlib.Path) -> list[list]:
    """``[relative path, size, mtime_ns]`` per file (content hashing is too slow for CT sets)."""
    out = []
    for path in sorted(set(paths)):
        stat = path.stat()
        try:
            rel = str(path.relative_to(root))
        except ValueError:
            rel = str(path)
        out.append([rel, stat.st_size, stat.st_mtime_ns])
    return out


def cache_key(content: dict, fingerprints: list) -> str:
    blob = json.dumps({"version": CACHE_VERSION, "config": content, "files": fingerprints},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheWriter:
    """Append preprocessed cases, then :meth:`close` renames the temp file into place.

    Use as a context manager: an exception (or KeyboardInterrupt) deletes the temp file.
    """

    def __init__(self, path: pathlib.Path, patch_size: int, channels: int, classes: int):
        import h5py

        self.path = pathlib.Path(path)
        self.tmp = temp_sibling(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.tmp, "w")
        p = patch_size
        self.images = self.file.create_dataset(
            "images", (0, p, p, channels), np.float32, maxshape=(None, p, p, channels),
            chunks=(1, p, p, channels), compression="lzf")
        self.masks = self.file.create_dataset(
            "masks", (0, p, p, classes), np.uint8, maxshape=(None, p, p, classes),
            chunks=(1, p, p, classes), compression="lzf")
        self.case_index = self.file.create_dataset("case_index", (0,), np.int32, maxshape=(None,))
        self.slice_index = self.file.create_dataset("slice_index", (0,), np.int32, maxshape=(None,))
        self.class_voxels = self.file.create_dataset(
            "class_voxels", (0, classes), np.int32, maxshape=(None, classes))
        self.case_ids: list[str] = []
        self.patient_ids: list[str] = []

    def append(self, case_id: str, patient_id: str, images: np.ndarray, masks: np.ndarray,
               slices: np.ndarray) -> None:
        n, s = len(self.images), len(images)
        for ds, arr in ((self.images, images), (self.masks, masks),
                        (self.case_index, np.full(s, len(self.case_ids), np.int32)),
                        (self.slice_index, np.asarray(slices, np.int32)),
                        (self.class_voxels, masks.sum(axis=(1, 2), dtype=np.int32))):
            ds.resize(n + s, axis=0)
            ds[n:] = arr
        self.case_ids.append(case_id)
        self.patient_ids.append(patient_id)

    def close(self, key: str, class_names: list[str], skipped: list[str], config: dict) -> None:
        attrs = self.file.attrs
        attrs["key"] = key
        for name, value in (("case_ids", self.case_ids), ("patient_ids", self.patient_ids),
                            ("class_names", class_names), ("skipped", skipped),
                            ("config", config)):
            attrs[name] = json.dumps(value, default=list)
        self.file.close()
        publish(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def read_meta(path: pathlib.Path) -> dict:
    """The attributes of a finished cache (JSON decoded) plus ``num_slices``."""
    import h5py

    with h5py.File(path, "r") as f:
        meta = {k: (json.loads(v) if k != "key" else v) for k, v in f.attrs.items()}
        meta["num_slices"] = int(f["images"].shape[0])
        meta["in_channels"] = int(f["images"].shape[-1])
        meta["case_index"] = f["case_index"][:]
        meta["class_voxels"] = f["class_voxels"][:]
    return meta
