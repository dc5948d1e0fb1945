"""The dataset a run was made on, as a record the run keeps (``data_record.json``).

The record lists every file the run reads, by content: per image and label file the reader
lists (``data.max_cases`` applied), its path relative to the root, its size, its modification
time and the SHA-256 of its bytes; and the SHA-256 of ``dataset.json`` read as JSON (top-level
keys sorted, nested order kept: reordering the top level or re-indenting is the same file,
reordering ``labels`` -- which orders the classes -- is not). The fingerprint is a SHA-256 over
those hashes and the relative paths.

Cost (``docs/benchmarks.md``): label files and ``dataset.json`` are hashed on every check (label
volumes compress to a few hundred KB at most); an image file whose size and modification time
are still those of the record keeps its recorded hash, any other is hashed again. So the first
stage of a run reads every file once, later commands read the labels only.

Comparing two records (:func:`differences`) names the files whose content differs, is missing
or is new. A copy of the dataset elsewhere (another disk, a container's mount) has the same
contents and is the same dataset; another dataset at the same relative path is not. An ``npz``
dataset is fingerprinted by its size and the hash of its first and last MiB.

Records of the first scheme (paths and sizes only, no ``scheme`` key) are compared the way they
were made, then replaced by a record of this scheme.

The record also keeps what inference needs from the dataset (classes, label values, channel
modalities, zoom or spacing), so ``iac predict`` never reads a ``dataset.json`` other than the
run's, and which cases the given U-Net was trained on (a rerun whose list differs is refused:
its splits would differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

from iac_tf.config.data import DataConfig, resolve_paths
from iac_tf.data.datasets import list_cases
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.data.unet_cases import read_unet_train_cases
from iac_tf.errors import DataError
from iac_tf.files import sha256_file

_MIB = 1 << 20
SCHEME = 2
DATASET_JSON = "dataset.json"


def _npz_digest(path: pathlib.Path) -> tuple[str, int]:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(_MIB))
        if size > _MIB:
            fh.seek(max(size - _MIB, _MIB))
            h.update(fh.read(_MIB))
    return h.hexdigest(), 1


def dataset_json_digest(path: pathlib.Path) -> str:
    """SHA-256 of ``dataset.json`` as JSON, top-level keys sorted (the raw bytes if it is not
    JSON)."""
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        return hashlib.sha256(raw).hexdigest()
    if isinstance(data, dict):
        data = {k: data[k] for k in sorted(data)}
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()


def _listed(cfg: DataConfig, root: pathlib.Path) -> tuple[list[pathlib.Path], set[pathlib.Path]]:
    """The image and label files of the dataset (sorted) and which of them are labels."""
    cases = list_cases(cfg.format, root)
    if cfg.max_cases:
        cases = cases[: cfg.max_cases]
    labels = {c.label_path for c in cases if c.label_path.is_file()}
    files = sorted({p for c in cases for p in (*c.image_paths, c.label_path) if p.is_file()})
    return files, labels


def _rel(path: pathlib.Path, root: pathlib.Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def contents(cfg: DataConfig, previous: dict | None = None) -> dict[str, list]:
    """``{relative path: [size, mtime_ns, sha256]}`` of every image and label file. An image
    whose size and modification time equal those of ``previous`` (a record's ``contents``)
    keeps that hash; labels are always hashed."""
    root, _ = resolve_paths(cfg)
    files, labels = _listed(cfg, root)
    previous = previous or {}
    out = {}
    for path in files:
        rel = _rel(path, root)
        st = path.stat()
        old = previous.get(rel)
        if (path not in labels and isinstance(old, list) and len(old) == 3
                and old[:2] == [st.st_size, st.st_mtime_ns]):
            out[rel] = list(old)
        else:
            out[rel] = [st.st_size, st.st_mtime_ns, sha256_file(path)]
    return out


def _digest(dataset_json: str | None, files: dict[str, list]) -> str:
    h = hashlib.sha256(f"scheme {SCHEME}\n".encode())
    if dataset_json:
        h.update(f"{DATASET_JSON}\0{dataset_json}\n".encode())
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel][2]}\n".encode())
    return h.hexdigest()


def fingerprint(cfg: DataConfig) -> tuple[str, int]:
    """``(sha256 hex, number of files)`` of the dataset ``cfg`` names (see the module
    docstring). Raises :class:`~iac_tf.errors.DataError` if it cannot be listed."""
    record = data_record(cfg)
    return record["fingerprint"], record["files"]


def legacy_fingerprint(cfg: DataConfig) -> tuple[str, int]:
    """The first scheme's fingerprint: ``dataset.json``'s bytes and every file's relative path
    and size (to compare a record made by it)."""
    root, _ = resolve_paths(cfg)
    if cfg.format == "npz":
        return _npz_digest(root)
    files, _ = _listed(cfg, root)
    h = hashlib.sha256()
    meta = root / DATASET_JSON
    if meta.is_file():
        h.update(b"dataset.json\0" + meta.read_bytes() + b"\0")
    for path in files:
        h.update(f"{_rel(path, root)}\0{path.stat().st_size}\n".encode())
    return h.hexdigest(), len(files)


def data_record(cfg: DataConfig, previous: dict | None = None,
                training_cases: bool = False) -> dict:
    """The run's dataset record: absolute root, format, scheme, fingerprint, file count, the
    per-file ``contents`` and ``dataset_json`` hash (:func:`contents`; ``previous``: the run's
    record, whose image hashes are reused for unchanged files), (NIfTI datasets) the
    preprocessing inference needs (:class:`~iac_tf.data.preprocessing.Preprocessing` as a
    mapping) and, when the config gives them, the given U-Net's training cases that the splits
    keep out of val_dt, val_search_dt and test_dt (``unet_train_cases``: source, fold, count and
    the SHA-256 of the sorted ids; no key otherwise). ``training_cases``: include that list (the
    pipeline's record; comparing the files alone, as ``iac predict --config`` does, needs no
    list file)."""
    root, _ = resolve_paths(cfg)
    record = {"root": str(root.resolve()), "format": cfg.format, "scheme": SCHEME}
    if cfg.format == "npz":
        digest, files = _npz_digest(root)
        record.update(fingerprint=digest, files=files)
    else:
        old = (previous or {}).get("contents") if (previous or {}).get("scheme") == SCHEME else None
        files = contents(cfg, old)
        meta = root / DATASET_JSON
        meta_digest = dataset_json_digest(meta) if meta.is_file() else None
        record.update(fingerprint=_digest(meta_digest, files), files=len(files),
                      dataset_json=meta_digest, contents=files)
        record["preprocessing"] = dataclasses.asdict(Preprocessing.from_data_config(cfg))
    unet = read_unet_train_cases(cfg) if training_cases else None
    if unet is not None:
        record["unet_train_cases"] = unet.record()
    return record


def differences(old: dict, new: dict, limit: int = 5) -> str:
    """What differs between two records of this scheme, e.g. ``labelsTr/a.nii.gz (content
    differs), labelsTr/b.nii.gz (missing now), 3 more``; ``""`` if the same data."""
    if old.get("fingerprint") == new.get("fingerprint"):
        return ""
    found = []
    if old.get("dataset_json") != new.get("dataset_json"):
        found.append(f"{DATASET_JSON} (content differs)")
    a, b = old.get("contents") or {}, new.get("contents") or {}
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            found.append(f"{rel} (missing now)")
        elif rel not in a:
            found.append(f"{rel} (not in the run's dataset)")
        elif a[rel][2] != b[rel][2]:
            found.append(f"{rel} (content differs)")
    if not found:
        return "other files"
    more = f", {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


def same_as_legacy(old: dict, cfg: DataConfig) -> bool:
    """A record of the first scheme matches the dataset ``cfg`` names now."""
    try:
        return legacy_fingerprint(cfg)[0] == old.get("fingerprint")
    except DataError:
        return False
