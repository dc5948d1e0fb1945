"""The dataset a run was made on, as a record the run keeps (``data_record.json``).

The fingerprint is a SHA-256 over the dataset's ``dataset.json`` (its bytes) and, per image and
label file the reader lists (``data.max_cases`` applied), its path relative to the root and its
size. Modification times are left out on purpose: a copy of the dataset elsewhere (another
disk, a container's mount) keeps its fingerprint, while another dataset at the same relative
path does not. An ``npz`` dataset is fingerprinted by its size and the hash of its first and
last MiB.

The record also keeps what inference needs from the dataset (classes, label values, channel
modalities, zoom or spacing), so ``iac predict`` never reads a ``dataset.json`` other than the
run's, and which cases the given U-Net was trained on (a rerun whose list differs is refused:
its splits would differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

from iac_tf.data.config import DataConfig
from iac_tf.data.datasets import list_cases
from iac_tf.data.prepare import resolve_paths
from iac_tf.data.unet_cases import read_unet_train_cases
from iac_tf.inference.volume import Preprocessing

_MIB = 1 << 20


def _npz_digest(path: pathlib.Path) -> tuple[str, int]:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(_MIB))
        if size > _MIB:
            fh.seek(max(size - _MIB, _MIB))
            h.update(fh.read(_MIB))
    return h.hexdigest(), 1


def fingerprint(cfg: DataConfig) -> tuple[str, int]:
    """``(sha256 hex, number of files)`` of the dataset ``cfg`` names (see the module
    docstring). Raises :class:`~iac_tf.data.config.DataError` if it cannot be listed."""
    root, _ = resolve_paths(cfg)
    if cfg.format == "npz":
        return _npz_digest(root)
    cases = list_cases(cfg.format, root)
    if cfg.max_cases:
        cases = cases[: cfg.max_cases]
    h = hashlib.sha256()
    meta = root / "dataset.json"
    if meta.is_file():
        h.update(b"dataset.json\0" + meta.read_bytes() + b"\0")
    files = sorted({p for c in cases for p in (*c.image_paths, c.label_path) if p.is_file()})
    for path in files:
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\n".encode())
    return h.hexdigest(), len(files)


def data_record(cfg: DataConfig, training_cases: bool = False) -> dict:
    """The run's dataset record: absolute root, format, fingerprint, file count, (NIfTI
    datasets) the preprocessing inference needs (:class:`~iac_tf.inference.volume.Preprocessing`
    as a mapping) and, when the config gives them, the given U-Net's training cases that the
    splits keep out of val_dt, val_search_dt and test_dt (``unet_train_cases``: source, fold,
    count and the SHA-256 of the sorted ids; no key otherwise). ``training_cases``: include
    that list (the pipeline's record; comparing the files alone, as ``iac predict --config``
    does, needs no list file)."""
    root, _ = resolve_paths(cfg)
    digest, files = fingerprint(cfg)
    record = {"root": str(root.resolve()), "format": cfg.format, "fingerprint": digest,
              "files": files}
    if cfg.format != "npz":
        prep = dataclasses.asdict(Preprocessing.from_data_config(cfg))
        record["preprocessing"] = prep
    unet = read_unet_train_cases(cfg) if training_cases else None
    if unet is not None:
        record["unet_train_cases"] = unet.record()
    return record
