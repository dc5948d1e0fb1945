"""Atomic, world-readable file writes: the one place where the package writes a run's files.

Everything a run leaves behind (config dumps, models, SavedModels, splits, the slice cache, CSV,
JSON, Markdown) is written under a temporary name beside its target and moved into place with
``os.replace``, so a kill at any moment leaves either the old file or the new one, never half of
one. Files get mode ``0666 & ~umask`` and folders ``0777 & ~umask`` -- with the usual umask 022
that is 0644 / 0755, so a ``runs/`` folder written by a container as root stays readable by the
host user; a stricter umask (e.g. 077) is respected. (``tempfile.mkstemp`` alone would leave
0600.)

JSON is strict: NaN and infinities are written as ``null`` (standard JSON has no NaN).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import shutil
from typing import Any, Iterator

from iac_tf.errors import UserError


def umask() -> int:
    """The process umask (read without changing it where the OS allows)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # pragma: no cover - non-Linux fallback
    os.umask(current)
    return current


def file_mode() -> int:
    """Mode of a new file: 0666 minus the umask (0644 with umask 022)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode of a new folder: 0777 minus the umask (0755 with umask 022)."""
    return 0o777 & ~umask()


def temp_sibling(path: str | os.PathLike) -> pathlib.Path:
    """A hidden temporary name beside ``path`` that keeps its suffix (``.keras``, ``.h5``), so
    writers that dispatch on the suffix still work."""
    path = pathlib.Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _set_modes(path: pathlib.Path) -> None:
    if path.is_dir():
        os.chmod(path, dir_mode())
        fmode, dmode = file_mode(), dir_mode()
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), dmode)
            for f in files:
                os.chmod(os.path.join(root, f), fmode)
    else:
        os.chmod(path, file_mode())


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> pathlib.Path:
    """Give ``tmp`` (a file or a folder) the package's modes and move it to ``path``, replacing
    what is there (a replaced folder is renamed aside first, then removed)."""
    tmp, path = pathlib.Path(tmp), pathlib.Path(path)
    _set_modes(tmp)
    if tmp.is_dir() and path.is_dir():
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def remove(path: str | os.PathLike) -> None:
    """Delete a file or folder tree if it exists."""
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def make_dirs(path: str | os.PathLike) -> pathlib.Path:
    """``mkdir -p`` (new folders get ``0777 & ~umask``)."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; write the file or folder there. On success it is
    published to ``path`` (:func:`publish`), on an exception it is removed."""
    path = pathlib.Path(path)
    make_dirs(path.parent)
    tmp = temp_sibling(path)
    remove(tmp)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return pathlib.Path(path)


def strict_json(obj: Any) -> Any:
    """``obj`` with NumPy values made plain, paths made strings and NaN / +-inf made ``None``."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy arrays and scalars
        return strict_json(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_json(obj: Any) -> str:
    """Strict JSON text (no bare NaN / Infinity), indented, newline-terminated."""
    return json.dumps(strict_json(obj), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as strict JSON (see :func:`strict_json`) atomically."""
    return atomic_write_text(path, dumps_json(obj))


def save_model(model, path: str | os.PathLike, **save_kwargs) -> pathlib.Path:
    """``model.save`` (``.keras``, ``.h5`` or a SavedModel folder with ``save_format="tf"``)
    through a temporary name, then published atomically."""
    with atomic_path(path) as tmp:
        model.save(str(tmp), **save_kwargs)
    return pathlib.Path(path)


# ---------------------------------------------------------------------------- what may be replaced
#: Marker files: a folder holding one was written by the tool and may be replaced by it.
RUN_MARKER = ".iac-run"
REPORT_MARKER = ".iac-report"
EXPORT_MARKER = ".iac-export"


class RefusedPath(UserError):
    """The tool will not write, replace or delete here: the path holds something it did not
    write (or a run). The message names the path and the way out."""


def mark(folder: str | os.PathLike, marker: str, what: str) -> pathlib.Path:
    """Write the marker file ``marker`` into ``folder``: "this folder is ``what``, written by
    iac_tf", which later lets the tool replace the folder (and nothing unmarked)."""
    path = pathlib.Path(folder) / marker
    text = (f"{what}, written by iac_tf. The tool replaces a folder only when it holds this "
            "file; delete it to keep the tool from ever replacing this folder.\n")
    if not path.is_file() or path.read_text(errors="replace") != text:
        atomic_write_text(path, text)
    return path


def is_marked(folder: str | os.PathLike, marker: str) -> bool:
    return (pathlib.Path(folder) / marker).is_file()


def is_run_folder(folder: str | os.PathLike) -> bool:
    """A run folder: marked by the tool, or (runs written before the marker) holding the
    resolved ``config.yaml`` beside ``version.txt`` or ``models.json``."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return False
    if is_marked(folder, RUN_MARKER):
        return True
    return (folder / "config.yaml").is_file() and any(
        (folder / name).exists() for name in ("version.txt", "models.json"))


def runs_within(folder: str | os.PathLike, depth: int = 2) -> list[pathlib.Path]:
    """Run folders at ``folder`` or up to ``depth`` levels below it."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    found = [folder] if is_run_folder(folder) else []
    if depth > 0:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            children = []
        for child in children:
            found += runs_within(child, depth - 1)
    return found


def check_replaceable_folder(folder: str | os.PathLike, marker: str, what: str,
                             option: str = "--out") -> None:
    """Raise :class:`RefusedPath` unless ``folder`` may be (re)written whole as ``what``: it
    does not exist, is empty, or carries ``marker`` (the tool wrote it); and it is not, and
    holds no, run folder."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RefusedPath(f"{folder}: is a file, not a folder for {what}; choose another {option}")
    runs = runs_within(folder)
    if runs:
        where = "is a run folder" if runs[0] == folder else f"holds the run folder {runs[0]}"
        raise RefusedPath(f"{folder}: {where}; {what} is never written over a run. Nothing was "
                          f"changed. Choose a new {option} folder outside the run folders")
    if folder.is_dir() and any(folder.iterdir()) and not is_marked(folder, marker):
        raise RefusedPath(f"{folder}: not empty and not {what} written by this tool (no "
                          f"{marker} file); nothing was changed. Choose a new or empty {option} "
                          "folder")


def check_new_or_ours(path: str | os.PathLike, ours: bool, what: str, hint: str = "") -> None:
    """Raise :class:`RefusedPath` if ``path`` exists and is not ``ours`` (a file the tool
    wrote, as the caller judged it)."""
    path = pathlib.Path(path)
    if (path.exists() or path.is_symlink()) and not ours:
        raise RefusedPath(f"{path}: exists and is not {what} written by this tool; it is left "
                          f"untouched{'. ' + hint if hint else ''}")


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to the tool's own log file ``path`` (created 0644 if needed); a log only
    grows, so it is appended to, not rewritten."""
    path = pathlib.Path(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
