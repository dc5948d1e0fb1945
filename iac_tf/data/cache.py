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
so a killed build leaves no cache that a later run could mistake for a finished one; the next
build deletes the temporaries of dead processes (:func:`clean_stale_temporaries`).

Full disk: the writer stops when less than :data:`~iac_tf.diskspace.MARGIN_BYTES` are free
before a case, and a write failing with ``ENOSPC`` is turned into the same
:class:`~iac_tf.diskspace.DiskFullError`, naming the folder and the space still needed (the
remaining slices of an upper bound, scaled by the compression achieved so far). The uncompressed
size is not required up front: lzf shrinks typical slices several-fold, so that would refuse
caches that fit. Aborting truncates the temp file to 0 bytes *before*
closing it: HDF5 flushes its metadata cache on close, and on a full disk that flush fails; h5py
then leaves the file half-closed and the interpreter crashes later (segfault, exit 139,
measured on a 1.5 MiB tmpfs). Truncating first frees the space, so the close succeeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
from collections.abc import Iterable

import h5py
import numpy as np

from iac_tf.diskspace import MARGIN_BYTES, DiskFullError, free_bytes, is_disk_full
from iac_tf.errors import DataError
from iac_tf.files import check_target, commit, temp_sibling

CACHE_VERSION = 1
#: Bytes per slice on top of the image and mask data (indices, chunk index, attributes).
SLICE_OVERHEAD = 256

#: ``.<stem>.<pid>.tmp<suffix>`` (:func:`iac_tf.files.temp_sibling`) or the older
#: ``<name>.<pid>.tmp``
_TMP = re.compile(r"^(?:\.(?P<stem>.+)\.(?P<pid>\d+)\.tmp(?P<suffix>\.\w+)?|"
                  r"(?P<name>.+)\.(?P<old_pid>\d+)\.tmp)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temporaries(folder: pathlib.Path) -> list[pathlib.Path]:
    """Delete the temporaries (:func:`iac_tf.files.temp_sibling` names) in ``folder`` whose
    process is dead on this machine, i.e. left by a killed build; return them. Those of live
    processes are kept. (A cache folder shared by several machines over the network: a live
    writer on another machine whose pid is unused here would lose its temporary; give each
    machine its own ``data.cache_dir`` there.)"""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        m = _TMP.match(path.name)
        if not m or not path.is_file():
            continue
        pid = int(m["pid"] or m["old_pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def slice_bytes(patch_size: int, channels: int, classes: int) -> int:
    """Uncompressed bytes of one cached slice (float32 image, uint8 mask, indices): an upper
    bound of the lzf-compressed size (lzf stores a chunk raw when it does not shrink)."""
    return patch_size * patch_size * (4 * channels + classes) + 4 * (2 + classes) + SLICE_OVERHEAD


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

    Args:
        path: the final cache file.
        patch_size, channels, classes: the slice geometry.
        expected_slices: an upper bound of the slices to be written (for the space needed in a
            full-disk message); ``None``: unknown.
    """

    KEY = "data.cache_dir"

    def __init__(self, path: pathlib.Path, patch_size: int, channels: int, classes: int,
                 expected_slices: int | None = None):

        self.path = pathlib.Path(path)
        self.tmp = temp_sibling(self.path)
        self.folder = self.path.parent
        self.row_bytes = slice_bytes(patch_size, channels, classes)
        self.expected_slices = expected_slices
        self.written = 0
        self.closed = False
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = None
        check_target(self.path, what="a slice cache file")
        if free_bytes(self.folder) < MARGIN_BYTES:
            raise self._full(self.row_bytes)
        try:
            self.file = h5py.File(self.tmp, "w")
            p = patch_size
            self.images = self.file.create_dataset(
                "images", (0, p, p, channels), np.float32, maxshape=(None, p, p, channels),
                chunks=(1, p, p, channels), compression="lzf")
            self.masks = self.file.create_dataset(
                "masks", (0, p, p, classes), np.uint8, maxshape=(None, p, p, classes),
                chunks=(1, p, p, classes), compression="lzf")
            self.case_index = self.file.create_dataset("case_index", (0,), np.int32,
                                                       maxshape=(None,))
            self.slice_index = self.file.create_dataset("slice_index", (0,), np.int32,
                                                        maxshape=(None,))
            self.class_voxels = self.file.create_dataset(
                "class_voxels", (0, classes), np.int32, maxshape=(None, classes))
        except BaseException as exc:
            self.abort()
            if is_disk_full(exc):
                raise self._full(self.row_bytes) from None
            raise
        self.case_ids: list[str] = []
        self.patient_ids: list[str] = []

    def _full(self, needed_now: int) -> DiskFullError:
        """Remove the partial file, then the full-disk error: the space needed is the whole
        cache's upper bound scaled by the compression reached so far (at least this write),
        the free space is measured after the removal."""
        total = 0
        if self.expected_slices is not None:
            ratio = 1.0  # compressed / raw bytes so far (lzf)
            if self.written:
                try:
                    ratio = min(1.0, self.tmp.stat().st_size / (self.written * self.row_bytes))
                except OSError:
                    pass
            total = int(self.expected_slices * self.row_bytes * ratio)
        self.abort()
        return DiskFullError(self.folder, max(total, needed_now) + MARGIN_BYTES,
                             "the slice cache", self.KEY)

    def append(self, case_id: str, patient_id: str, images: np.ndarray, masks: np.ndarray,
               slices: np.ndarray) -> None:
        n, s = len(self.images), len(images)
        needed = s * self.row_bytes
        if free_bytes(self.folder) < MARGIN_BYTES:  # already full: stop before HDF5 fails
            raise self._full(needed)
        try:
            for ds, arr in ((self.images, images), (self.masks, masks),
                            (self.case_index, np.full(s, len(self.case_ids), np.int32)),
                            (self.slice_index, np.asarray(slices, np.int32)),
                            (self.class_voxels, masks.sum(axis=(1, 2), dtype=np.int32))):
                ds.resize(n + s, axis=0)
                ds[n:] = arr
        except (OSError, RuntimeError) as exc:
            if is_disk_full(exc):
                raise self._full(needed) from None
            raise DataError(f"{self.tmp}: cannot write the slice cache ({exc})") from None
        self.written += s
        self.case_ids.append(case_id)
        self.patient_ids.append(patient_id)

    def close(self, key: str, class_names: list[str], skipped: list[str], config: dict) -> None:
        try:
            attrs = self.file.attrs
            attrs["key"] = key
            for name, value in (("case_ids", self.case_ids), ("patient_ids", self.patient_ids),
                                ("class_names", class_names), ("skipped", skipped),
                                ("config", config)):
                attrs[name] = json.dumps(value, default=list)
            # flush first: a flush failing on a full disk leaves h5py usable (abort can still
            # truncate and close); a *close* failing half-way leaves it crashing later
            self.file.flush()
            self.file.close()
        except (OSError, RuntimeError) as exc:  # HDF5 reports a failed flush as RuntimeError
            if is_disk_full(exc):
                raise self._full(SLICE_OVERHEAD) from None
            raise
        commit(self.tmp, self.path, what="a slice cache file")

    def abort(self) -> None:
        """Delete the temp file. It is truncated first: that frees its space, so HDF5's
        metadata flush at close cannot fail on a full disk (see the module docstring)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.tmp.exists():
                os.truncate(self.tmp, 0)
        except OSError:
            pass
        try:
            for _ in range(2):  # after a failed flush the first close may raise; retry once
                try:
                    if self.file is not None:
                        self.file.close()
                    break
                except Exception:  # noqa: BLE001 - the file is being thrown away
                    continue
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class CorruptCacheError(DataError):
    """A cache file exists but cannot be read (truncated, overwritten, not HDF5)."""


def read_meta(path: pathlib.Path) -> dict:
    """The attributes of a finished cache (JSON decoded) plus ``num_slices``."""

    try:
        with h5py.File(path, "r") as f:
            meta = {k: (json.loads(v) if k != "key" else v) for k, v in f.attrs.items()}
            meta["num_slices"] = int(f["images"].shape[0])
            meta["in_channels"] = int(f["images"].shape[-1])
            meta["case_index"] = f["case_index"][:]
            meta["class_voxels"] = f["class_voxels"][:]
            for name in ("case_ids", "patient_ids", "class_names"):
                if name not in meta:
                    raise KeyError(name)
            if len(meta["case_index"]):  # the last chunk is the last written: reads if complete
                f["images"][-1], f["masks"][-1]
    except (OSError, KeyError, ValueError) as exc:
        raise CorruptCacheError(
            f"{path}: unreadable cache file ({type(exc).__name__}: {exc})") from None
    return meta
