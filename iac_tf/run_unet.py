"""The run owns its U-Net: a user's trained U-Net (``unet.pretrained``: a ``.keras`` or ``.h5``
file or a SavedModel folder) is copied into the run folder with its SHA-256, and everything that
reads the run's U-Net afterwards -- Stages II and III, the comparisons, a resumed run,
``iac evaluate``, ``iac predict RUN --stage 1``, ``iac report`` -- reads that copy and refuses
it when its content no longer matches the recorded hash.

Where things are (:class:`~iac_tf.run_layout.RunLayout`): the copy is ``RUN/unet/<name>`` (the
file or folder name of ``unet.pretrained``), the record ``RUN/unet_record.json``::

    {"file": "unet/my_unet.keras", "sha256": "3f2a...", "kind": "file",
     "source": "/data/models/my_unet.keras", "name": "my_unet.keras",
     "label": "custom: my_unet.keras, 3f2a1b4c", "bytes": 1234567}

The SHA-256 of a file is of its bytes; of a folder, of each file in sorted order of its path
relative to the folder: that path, a NUL byte, its size in decimal, a NUL byte, its bytes
(:func:`fingerprint`).

The copy is made by :func:`adopt` only after every check of a stage passed. It is a real copy,
not a hard link: Keras' ``model.save(path)`` rewrites an existing file in place, so a hard link
would follow the user overwriting their file (see docs/decisions.md, "The run's U-Net").

The label names the U-Net in the recorded configs (``unet.backbone``), the run record and the
report, so two runs on two different U-Nets of one dataset are two settings.

A run made before the run kept a copy (no record; ``models.json`` names the U-Net outside the
run) keeps working from that path; the first reader says once that it is not self-contained.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import shutil

from iac_tf.errors import UserError
from iac_tf.files import atomic_path, remove
from iac_tf.run_layout import RunLayout

log = logging.getLogger("iac_tf.run_unet")

_CHUNK = 1 << 20
#: (path, size/mtime signature) -> SHA-256, so a process hashes an unchanged U-Net once
_HASHES: dict[tuple, str] = {}
#: runs already said to be not self-contained (one line per run and process)
_WARNED: set[pathlib.Path] = set()


class UNetChanged(UserError):
    """The run's U-Net (or the file ``unet.pretrained`` names) is not the one the run recorded;
    the message names the file, the recorded and the found SHA-256."""


def _files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file()),
                  key=lambda p: p.relative_to(folder).as_posix())


def _signature(path: pathlib.Path) -> tuple:
    files = _files(path) if path.is_dir() else [path]
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, or of a folder's files (see the module docstring)."""
    path = pathlib.Path(path)
    key = (str(path.resolve()), _signature(path))
    if key in _HASHES:
        return _HASHES[key]
    sha = hashlib.sha256()
    if path.is_dir():
        for f in _files(path):
            sha.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0".encode())
            _feed(sha, f)
    else:
        _feed(sha, path)
    _HASHES[key] = sha.hexdigest()
    return _HASHES[key]


def _feed(sha, path: pathlib.Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)


def label(name: str, sha256: str | None) -> str:
    """How runs, configs and the report name a user's U-Net: ``custom: my_unet.keras, 3f2a1b4c``
    (``custom: my_unet.keras`` when no hash was recorded)."""
    return f"custom: {name}, {sha256[:8]}" if sha256 else f"custom: {name}"


def _copy_path(layout: RunLayout, record: dict) -> pathlib.Path:
    path = pathlib.Path(record["file"])
    return path if path.is_absolute() else layout.root / path


def verified(layout: RunLayout) -> pathlib.Path | None:
    """The run's own U-Net, its content checked against the record (``None``: the run has no
    record). Raises :class:`UNetChanged` naming the file and both hashes when it differs, a
    UserError when it is gone."""
    record = layout.read_unet_record()
    if record is None:
        return None
    path = _copy_path(layout, record)
    if not path.exists():
        raise UserError(f"{path}: the run's copy of its U-Net is missing (recorded in "
                        f"{layout.unet_record}, sha256 {record['sha256']}); nothing can be "
                        "computed with this run's U-Net. Restore the file (a copy of the run "
                        "folder holds it) or start a new run")
    found = fingerprint(path)
    if found != record["sha256"]:
        raise UNetChanged(f"{path}: the run's U-Net has changed since it was recorded: sha256 "
                          f"recorded {record['sha256']}, found {found} ({layout.unet_record}). "
                          "Nothing was computed with it. Restore the run's file, or start a "
                          "new run with the new U-Net")
    return path


def not_self_contained(layout: RunLayout, path: pathlib.Path) -> None:
    """Say once per run that its U-Net is a file outside it with no recorded fingerprint."""
    key = layout.root.resolve()
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("%s is not self-contained: its U-Net is %s, outside the run folder, with no "
                    "recorded SHA-256 (a run made before runs kept their U-Net); if that file "
                    "has changed, so have this run's results", layout.root, path)


def run_unet(layout: RunLayout, pretrained: str | os.PathLike | None) -> pathlib.Path:
    """The U-Net a run with ``unet.pretrained`` improves, for every reader: the run's verified
    copy; in a run without a record, the path its ``models.json`` or ``pretrained`` names
    (said once to be outside the run)."""
    path = verified(layout)
    if path is not None:
        return path
    path = layout.model_paths().get("unet") or pathlib.Path(pretrained)
    not_self_contained(layout, path)
    return path


def checked_model(layout: RunLayout, path: pathlib.Path) -> pathlib.Path:
    """``path``, the run's registered U-Net (``models.json``'s ``unet``), checked: the run's copy
    against its hash (:func:`verified`); a file outside the run is said once to be so."""
    record = layout.read_unet_record()
    if record is not None and _copy_path(layout, record).resolve() == path.resolve():
        return verified(layout)
    if record is None and not _inside(path, layout.root):
        not_self_contained(layout, path)
    return path


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


# ---------------------------------------------------------------------------- the stage commands
def checked_source(layout: RunLayout, pretrained: str | os.PathLike,
                   restart: int | None = None) -> pathlib.Path:
    """Before a stage writes anything: the U-Net file the pre-flight should inspect. Without a
    record, ``pretrained`` itself (:func:`adopt` copies it after the checks). With one: the
    run's copy, verified; ``pretrained`` must hold the same content or be absent (a run folder
    moved without the user's file goes on with its copy). Other content is refused naming both
    hashes, unless ``restart`` is 1 (every result made with the U-Net is cleared; the copy is
    then replaced)."""
    source = pathlib.Path(pretrained)
    record = layout.read_unet_record()
    if record is None:
        return source
    if restart == 1 and source.exists():
        return source
    copy = verified(layout)
    if not source.exists():
        log.info("%s not found: the run goes on with its own copy %s (sha256 %s)", source, copy,
                 record["sha256"][:12])
        return copy
    found = fingerprint(source)
    if found != record["sha256"]:
        raise UNetChanged(
            f"{source}: unet.pretrained now has other content than the U-Net {layout.root} was "
            f"made with: sha256 recorded {record['sha256']} ({copy}), found {found}. Nothing "
            f"was changed. Start a new run for the new U-Net (--set name=...), redo every stage "
            f"of this one with it (`iac run CONFIG --restart stage1`), or put the original "
            f"file back")
    return copy


def adopt(layout: RunLayout, pretrained: str | os.PathLike) -> dict:
    """After every check passed: copy ``pretrained`` into the run (``unet/<name>``, written
    under a temporary name, then moved into place) and record its SHA-256, unless the run's
    copy already holds that content (or ``pretrained`` is gone). Returns the record."""
    source = pathlib.Path(pretrained)
    record = layout.read_unet_record()
    if record is not None and (not source.exists() or fingerprint(source) == record["sha256"]):
        return record
    if not source.exists():
        raise FileNotFoundError(f"{source}: U-Net file not found (unet.pretrained)")
    previous = layout.model_paths().get("unet") if record is None else None
    dest = layout.own_unet(source.name)
    with atomic_path(dest) as tmp:
        if source.is_dir():
            shutil.copytree(source, tmp)
        else:
            shutil.copyfile(source, tmp)
    sha = fingerprint(dest)
    files = _files(dest) if dest.is_dir() else [dest]
    new = {"file": layout.rel(dest), "sha256": sha,
           "kind": "folder" if dest.is_dir() else "file", "source": str(source.resolve()),
           "name": source.name, "label": label(source.name, sha),
           "bytes": sum(f.stat().st_size for f in files)}
    layout.write_unet_record(new)
    former = _copy_path(layout, record) if record is not None else None
    if former is not None and former != dest and _inside(former, layout.unet_dir):
        remove(former)  # the run's former copy (--restart stage1 with a new U-Net)
    if previous is not None and not _inside(previous, layout.root):
        log.info("%s: copied into the run as %s (sha256 %s). The run's earlier results were "
                 "made with %s, whose content was not recorded then", source, dest, sha[:12],
                 previous)
    else:
        log.info("U-Net %s copied into the run: %s (sha256 %s)", source, dest, sha[:12])
    return new


def unet_label(config: dict, record: dict | None) -> str | None:
    """The label of a user's U-Net from a run's ``config.yaml`` (a mapping) and its U-Net record
    (``None`` for a run whose U-Net Stage I trained)."""
    unet = config.get("unet") if isinstance(config.get("unet"), dict) else {}
    if not unet.get("pretrained"):
        return None
    if record is not None:
        return record.get("label") or label(str(record.get("name")), record.get("sha256"))
    return label(pathlib.PurePath(str(unet["pretrained"])).name, None)


__all__ = ["UNetChanged", "adopt", "checked_model", "checked_source", "fingerprint", "label",
           "run_unet", "unet_label", "verified"]
