"""The writer gate: the one place where the package writes, replaces and deletes files.

Every file a command writes goes through :func:`atomic_path` (or what is built on it:
:func:`atomic_write_text`, :func:`atomic_write_json`, :func:`save_model`, :func:`save_figure`,
:func:`commit`, :class:`Staging`), every deletion through :func:`remove`. The gate

* checks ownership before any byte is written (:func:`check_target`): the target is new, or a
  manifest lists it with the size and SHA-256 it has now -- the tool wrote it and nobody changed
  it since. Anything else is refused (:class:`RefusedPath`), naming the file;
* inside a run folder, lets only the process holding the run's lock write, and checks that its
  lock file is still the one it locked (:mod:`iac_tf.locks`);
* writes under a temporary name beside the target and moves it into place with ``os.replace``,
  so a kill at any moment leaves either the old file or the new one, never half of one;
* records what it wrote in the owner's manifest (:data:`MANIFEST`: path, size, SHA-256; one
  JSON line per file, append-only).

The owner of a path is the nearest folder above it holding a marker (a run, a report, an
export: :data:`MARKERS`), else the folder the file is in (predictions, scores, the slice cache).

Files get mode ``0666 & ~umask`` and folders ``0777 & ~umask`` -- with the usual umask 022
that is 0644 / 0755, so a ``runs/`` folder written by a container as root stays readable by the
host user; a stricter umask (e.g. 077) is respected. (``tempfile.mkstemp`` alone would leave
0600.)

JSON is strict: NaN and infinities are written as ``null`` (standard JSON has no NaN).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
from typing import Any, Iterator

from iac_tf import locks
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
    what is there (a replaced folder is renamed aside first, then removed). No ownership check:
    callers go through :func:`commit` (or :func:`atomic_path`)."""
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


def discard(path: str | os.PathLike) -> None:
    """Delete a temporary of this process (a :func:`temp_sibling` name) if it exists. Not for
    anything else: every other deletion goes through :func:`remove`."""
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
def atomic_path(path: str | os.PathLike, *, what: str = "a file", hint: str = "",
                replace_changed: bool = False) -> Iterator[pathlib.Path]:
    """The writer gate: every file or folder the package writes goes through here (or through
    :func:`commit`). Checks that ``path`` may be written (:func:`check_target`: new, or written
    by this tool and unchanged since; inside a run folder only by the holder of its lock), then
    yields a temporary path beside ``path``; write the file or folder there. On success it is
    checked again, published to ``path`` and recorded in the manifest; on an exception it is
    removed and ``path`` is left as it was."""
    path = pathlib.Path(path)
    seen = check_target(path, what=what, hint=hint, replace_changed=replace_changed)
    make_dirs(path.parent)
    tmp = temp_sibling(path)
    discard(tmp)
    try:
        yield tmp
        commit(tmp, path, what=what, hint=hint, replace_changed=replace_changed, seen=seen)
    except BaseException:
        discard(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **gate) -> pathlib.Path:
    """Write ``data`` to ``path`` through the gate (:func:`atomic_path`), fsynced before the
    rename."""
    with atomic_path(path, **gate) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return pathlib.Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, **gate) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` through the gate (:func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), **gate)


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> pathlib.Path:
    """``fig.savefig`` through the gate (the format is taken from ``path``'s suffix)."""
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format=path.suffix.lstrip(".") or None, **savefig_kwargs)
    return path


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


def atomic_write_json(path: str | os.PathLike, obj: Any, **gate) -> pathlib.Path:
    """Write ``obj`` as strict JSON (see :func:`strict_json`) through the gate."""
    return atomic_write_text(path, dumps_json(obj), **gate)


def save_model(model, path: str | os.PathLike, **save_kwargs) -> pathlib.Path:
    """``model.save`` (``.keras``, ``.h5`` or a SavedModel folder with ``save_format="tf"``)
    through a temporary name, then published atomically."""
    with atomic_path(path) as tmp:
        model.save(str(tmp), **save_kwargs)
    return pathlib.Path(path)


# ---------------------------------------------------------------------------- what may be replaced
#: Marker files: a folder holding one was written by the tool and is one owner of the files in
#: it and below it (their manifest is the folder's :data:`MANIFEST`).
RUN_MARKER = ".iac-run"
REPORT_MARKER = ".iac-report"
EXPORT_MARKER = ".iac-export"
MARKERS = (RUN_MARKER, REPORT_MARKER, EXPORT_MARKER)
#: The manifest of an owner folder: one JSON line per file written (path relative to the
#: folder, size, SHA-256 of what the tool wrote), per removal, and per folder whose files a
#: library writes and rotates itself (TensorFlow checkpoints and event logs: ``"tree": true``).
#: The last line of a path wins. Append-only, so writers never lose each other's lines.
MANIFEST = ".iac-manifest"


class RefusedPath(UserError):
    """The tool will not write, replace or delete here: the path holds something it did not
    write (or a run). The message names the path and the way out."""


def _abs(path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(os.path.abspath(path))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 (hex) of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def owner_root(path: str | os.PathLike) -> pathlib.Path:
    """The folder whose manifest lists ``path``: the nearest folder above it holding a marker
    (a run, a report, an export), else the folder ``path`` is in."""
    path = _abs(path)
    for folder in path.parents:
        if any((folder / m).is_file() for m in MARKERS):
            return folder
    return path.parent


class Manifest:
    """The manifest of the owner folder ``root`` (:data:`MANIFEST`)."""

    #: path -> (inode, bytes parsed, entries): lines appended since are parsed on the next read
    _cache: dict[str, tuple[int, int, dict]] = {}

    def __init__(self, root: str | os.PathLike):
        self.root = _abs(root)
        self.path = self.root / MANIFEST

    def exists(self) -> bool:
        return self.path.is_file()

    def rel(self, path: str | os.PathLike) -> str:
        return pathlib.PurePath(os.path.relpath(_abs(path), self.root)).as_posix()

    def entries(self) -> dict[str, dict]:
        """``{relative path: last entry}`` of the files (and trees) the manifest lists now."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        try:
            st = os.fstat(fd)
            ino, done, entries = self._cache.get(str(self.path), (None, 0, {}))
            if ino != st.st_ino or st.st_size < done:
                done, entries = 0, {}
            entries = dict(entries)
            os.lseek(fd, done, os.SEEK_SET)
            tail = b""
            while True:
                block = os.read(fd, 1 << 20)
                if not block:
                    break
                tail += block
        finally:
            os.close(fd)
        complete = tail.rfind(b"\n") + 1  # a line still being appended is read next time
        for line in tail[:complete].splitlines():
            try:
                entry = json.loads(line)
                rel = entry["path"]
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line lists nothing
            if entry.get("removed"):
                entries = {k: v for k, v in entries.items()
                           if k != rel and not k.startswith(rel + "/")}
            else:
                entries[rel] = entry
        self._cache[str(self.path)] = (st.st_ino, done + complete, entries)
        return entries

    def append(self, lines: list[dict]) -> None:
        if not lines:
            return
        make_dirs(self.root)
        data = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())
        try:
            os.write(fd, data)  # one O_APPEND write: lines of two writers never interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    def record(self, paths, adopted: bool = False) -> None:
        """List the files ``paths`` (folders: every file below them) as written by the tool."""
        lines = []
        for path in paths:
            for file in _files_below(_abs(path)):
                st = file.stat()
                line = {"path": self.rel(file), "size": st.st_size, "sha256": sha256_file(file)}
                if adopted:
                    line["adopted"] = True
                lines.append(line)
        self.append(lines)

    def record_tree(self, folder: str | os.PathLike) -> None:
        """List ``folder`` as one the tool's library writes and rotates itself (its files are
        the tool's as a whole)."""
        rel = self.rel(folder)
        if not self.entries().get(rel, {}).get("tree"):
            self.append([{"path": rel, "tree": True}])

    def forget(self, path: str | os.PathLike) -> None:
        self.append([{"path": self.rel(path), "removed": True}])

    def problem(self, path: pathlib.Path, entries: dict | None = None) -> str | None:
        """``None`` if this manifest lists the existing file ``path`` as the tool wrote it,
        else what is wrong (``"not listed"`` here, ``"changed"``, ``"not a regular file"``)."""
        entries = self.entries() if entries is None else entries
        rel = self.rel(path)
        parts = rel.split("/")
        if any(entries.get("/".join(parts[:k]), {}).get("tree") for k in range(1, len(parts))):
            return None
        entry = entries.get(rel)
        if entry is None or "sha256" not in entry:
            return "not listed"
        if path.is_symlink() or not path.is_file():
            return "not a regular file"
        if path.stat().st_size != entry.get("size") or sha256_file(path) != entry["sha256"]:
            return "changed"
        return None


def file_problem(path: pathlib.Path, cache: dict | None = None) -> str | None:
    """``None`` if the existing file ``path`` is the tool's and unchanged: a manifest in its
    folder or one above it (up to the nearest marked folder, whose files it lists) lists it with
    the size and SHA-256 it has now; else ``"not listed"``, ``"changed"`` or ``"not a regular
    file"``. (A manifest is always the tool's own.)"""
    if path.name == MANIFEST and path.is_file() and not path.is_symlink():
        return None
    cache = {} if cache is None else cache
    for folder in path.parents:
        marked = any((folder / m).is_file() for m in MARKERS)
        key = str(folder)
        if key not in cache:
            manifest = _adopt_if_unlisted(folder) if marked else Manifest(folder)
            cache[key] = (manifest, manifest.entries() if manifest.exists() else None)
        manifest, entries = cache[key]
        if entries is not None:
            verdict = manifest.problem(path, entries)
            if verdict != "not listed":
                return verdict
        if marked:
            break
    return "not listed"


def _files_below(path: pathlib.Path) -> list[pathlib.Path]:
    """``path`` if a file, else every file below the folder ``path`` (hidden ones too)."""
    if not path.is_dir() or path.is_symlink():
        return [path]
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        out += [pathlib.Path(root) / f for f in sorted(files)]
    return out


def run_lock_path(run_dir: str | os.PathLike) -> pathlib.Path:
    """The lock file of the run folder ``run_dir``: ``.NAME.lock`` beside it."""
    run_dir = _abs(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def _check_run_writer(root: pathlib.Path, path: pathlib.Path) -> None:
    """Inside a run folder only the process holding the run's lock writes (and its lock file
    must still be the one it locked)."""
    if not is_run_folder(root):
        return

    lock = run_lock_path(root)
    if locks.holds(lock):
        locks.verify(lock)
        return
    holder = locks.read_holder(lock)
    if holder is not None:
        raise locks.LockedError(f"{path}: the run folder {root} is in use by {holder}; nothing "
                                "was written. Wait for that process to finish, then rerun")
    raise RefusedPath(f"{path}: is inside the run folder {root}, which only that run's commands "
                      "write (iac run, stage1-3, compare, evaluate); nothing was written. Choose "
                      "an output outside the run folder")


def _adopt_if_unlisted(root: pathlib.Path) -> Manifest:
    """The manifest of ``root``; a folder marked before manifests existed first gets one
    listing the files it holds now (the marker was then the proof that the tool wrote them)."""
    manifest = Manifest(root)
    if not manifest.exists() and any((root / m).is_file() for m in MARKERS):
        manifest.record([p for p in _files_below(root) if p.name != MANIFEST
                         and not _is_temporary(p)], adopted=True)
    return manifest


def _is_temporary(path: pathlib.Path) -> bool:
    return path.name.startswith(".") and (".tmp" in path.name or path.name.endswith(".old"))


_TEMP_FOLDER = re.compile(r"^\..+\.\d+\.tmp(\.\w+)?$")


def _in_temporary_folder(path: pathlib.Path) -> bool:
    """``path`` lies in a temporary folder of this tool (a :func:`temp_sibling` name, e.g. a
    report being built): it is published through the gate as a whole, not file by file."""
    return any(_TEMP_FOLDER.match(folder.name) for folder in path.parents)


def _signature(path: pathlib.Path):
    """What :func:`commit` compares with :func:`check_target` to skip hashing twice."""
    if not path.exists():
        return None
    try:
        return [(str(f), st.st_size, st.st_mtime_ns, st.st_ino)
                for f in _files_below(path) for st in [f.stat()]]
    except OSError:
        return "unknown"


def target_problem(path: str | os.PathLike, replace_changed: bool = False
                   ) -> tuple[str, pathlib.Path] | None:
    """``None`` if ``path`` may be written, replaced or removed by the tool now; else ``(what is
    wrong, the file)``. Refuses (raises) when ``path`` is inside a run folder this process does
    not hold the lock of."""
    path = _abs(path)
    if _in_temporary_folder(path):
        return None
    root = owner_root(path)
    _check_run_writer(root, path)
    if not path.exists() and not path.is_symlink():
        return None
    cache: dict = {}
    for file in _files_below(path) if not path.is_symlink() else [path]:
        problem = file_problem(file, cache)
        if problem == "changed" and replace_changed:
            continue
        if problem is not None:
            return problem, file
    return None


def check_target(path: str | os.PathLike, *, what: str = "a file", hint: str = "",
                 replace_changed: bool = False):
    """Raise :class:`RefusedPath` unless ``path`` is new, or (a file, or a folder and
    everything in it) is listed in its owner's manifest with the size and SHA-256 it has now.
    ``replace_changed``: a listed file whose content changed may be replaced (a damaged cache
    file the caller found unreadable). Returns what :func:`commit` compares."""
    found = target_problem(path, replace_changed)
    if found is not None:
        problem, file = found
        raise RefusedPath(refusal(file, problem, what, hint or
                                  "Nothing was written; move it away or choose another output"))
    return _signature(_abs(path))


def refusal(file: pathlib.Path, problem: str, what: str, hint: str) -> str:
    """The one-line refusal of :func:`check_target`."""
    if problem == "changed":
        why = (f"was written by this tool as {what} but has changed since (its size or SHA-256 "
               f"differs from {owner_root(file) / MANIFEST})")
    elif problem == "not a regular file":
        why = "is not a regular file written by this tool"
    else:
        why = f"exists and is not {what} written by this tool"
    return f"{file}: {why}; it is left untouched. {hint}"


def commit(tmp: str | os.PathLike, path: str | os.PathLike, *, what: str = "a file",
           hint: str = "", replace_changed: bool = False, seen="unchecked") -> pathlib.Path:
    """Publish the finished temporary ``tmp`` to ``path`` through the gate: ``path`` is checked
    (unless it is as :func:`check_target` ``seen`` it), replaced atomically and recorded in its
    owner's manifest."""
    path = _abs(path)
    if _in_temporary_folder(path):
        return publish(tmp, path)
    if seen == "unchecked" or seen != _signature(path):
        check_target(path, what=what, hint=hint, replace_changed=replace_changed)
    else:
        _check_run_writer(owner_root(path), path)
    manifest = Manifest(owner_root(path))
    publish(tmp, path)
    manifest.append([{"path": manifest.rel(path), "removed": True}]
                    + [{"path": manifest.rel(f), "size": f.stat().st_size,
                        "sha256": sha256_file(f)} for f in _files_below(path)])
    return path


def record_written(paths, tree: bool = False) -> None:
    """Record files a library wrote in place (``tree``: folders whose files the library writes
    and rotates itself, e.g. TensorFlow's ``checkpoints/``), after checking the writer."""
    for path in map(_abs, paths):
        if _in_temporary_folder(path):
            continue
        root = owner_root(path)
        _check_run_writer(root, path)
        manifest = _adopt_if_unlisted(root)
        if tree:
            manifest.record_tree(path)
        elif path.exists():
            manifest.record([path])


def remove(path: str | os.PathLike, *, what: str = "a file", hint: str = "",
           replace_changed: bool = False) -> None:
    """Delete a file or folder tree through the gate: only if everything in it is the tool's
    and unchanged (:func:`check_target`; ``replace_changed``: a listed file that changed, e.g.
    a cache file found damaged, may go too); a missing path is nothing to do."""
    path = _abs(path)
    if not path.exists() and not path.is_symlink():
        return
    check_target(path, what=what, hint=hint or "Nothing was deleted; move it away, then rerun",
                 replace_changed=replace_changed)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    if not _in_temporary_folder(path):
        Manifest(owner_root(path)).forget(path)


def check_removable(paths, what: str, hint: str) -> None:
    """Raise :class:`RefusedPath` for the first of ``paths`` holding a file the tool did not
    write (or that changed since), before anything is deleted."""
    for path in paths:
        if pathlib.Path(path).exists():
            check_target(path, what=what, hint=hint)


def check_listed_unchanged(folder: str | os.PathLike, what: str, hint: str) -> list[pathlib.Path]:
    """Raise :class:`RefusedPath` for the first file below ``folder`` that its manifest lists
    but that changed since the tool wrote it; return the files it does not list (someone
    else's: never replaced or deleted)."""
    folder = _abs(folder)
    if not folder.is_dir():
        return []
    cache: dict = {}
    others = []
    for file in _files_below(folder):
        if file.name == MANIFEST or _is_temporary(file):
            continue
        problem = file_problem(file, cache)
        if problem == "changed":
            raise RefusedPath(refusal(file, problem, what, hint))
        if problem is not None:
            others.append(file)
    return others


class Staging:
    """A hidden temporary folder beside ``dest`` to build a set of files in (``with Staging(dest)
    as stage: stage.write_text("report.md", ...)``), then :meth:`publish` them into ``dest`` one
    by one through the gate: files of ``dest`` the tool wrote and nobody changed are replaced,
    those of an earlier build that this one no longer has are removed, and files the tool did
    not write are kept (one at a path this build writes is refused before anything moves)."""

    def __init__(self, dest: str | os.PathLike):
        self.dest = _abs(dest)
        self.root = temp_sibling(self.dest)

    def __enter__(self) -> "Staging":
        discard(self.root)
        make_dirs(self.root)
        return self

    def __exit__(self, *exc) -> None:
        discard(self.root)

    def path(self, rel: str) -> pathlib.Path:
        """Where to build the file ``rel`` (its folders created)."""
        path = self.root / rel
        make_dirs(path.parent)
        return path

    def write_text(self, rel: str, text: str) -> pathlib.Path:
        path = self.path(rel)
        path.write_bytes(text.encode("utf-8"))
        return path

    def publish(self, marker: str, what: str, hint: str) -> dict[str, list[str]]:
        """Move the built files into ``dest`` (marked with ``marker``); returns the relative
        paths ``written``, ``removed`` (own files of an earlier build) and ``kept`` (files
        the tool did not write)."""
        built = [p for p in _files_below(self.root) if p.is_file()]
        rels = [pathlib.PurePath(os.path.relpath(p, self.root)).as_posix() for p in built]
        seen = {rel: check_target(self.dest / rel, what=what, hint=hint) for rel in rels}
        make_dirs(self.dest)
        mark(self.dest, marker, what)
        manifest = Manifest(self.dest)
        before = manifest.entries()
        for path, rel in zip(built, rels):
            make_dirs((self.dest / rel).parent)
            commit(path, self.dest / rel, what=what, hint=hint, seen=seen[rel])
        removed = []
        for rel, entry in sorted(before.items()):
            if rel in rels or rel in (marker, MANIFEST) or entry.get("adopted") or entry.get("tree"):
                continue
            if (self.dest / rel).is_file():
                remove(self.dest / rel, what=what, hint=hint)
                removed.append(rel)
        for folder in sorted({(self.dest / r).parent for r in removed}, reverse=True):
            while folder != self.dest and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        entries = manifest.entries()
        kept = [manifest.rel(p) for p in _files_below(self.dest) if p.name != MANIFEST
                and not _is_temporary(p) and manifest.rel(p) not in entries]
        return {"written": rels, "removed": removed, "kept": kept}


def mark(folder: str | os.PathLike, marker: str, what: str) -> pathlib.Path:
    """Write the marker file ``marker`` into ``folder``: "this folder is ``what``, written by
    iac_tf"; with its manifest it lets the tool replace the files it wrote there (and nothing
    else)."""
    path = pathlib.Path(folder) / marker
    text = (f"{what}, written by iac_tf. The tool replaces a file here only when {MANIFEST} "
            "lists it with the size and SHA-256 it has now; delete this file to keep the tool "
            "from ever writing into this folder.\n")
    if not path.is_file() or path.read_text(errors="replace") != text:
        atomic_write_text(path, text, replace_changed=True)
    return path


def adopt_folder(folder: str | os.PathLike, marker: str, what: str) -> list[pathlib.Path]:
    """Make ``folder`` (the user says the tool wrote it) an owner of its files: list every file
    it holds now in a new manifest, then mark it. Returns the files listed."""
    folder = _abs(folder)
    manifest = Manifest(folder)
    found = [p for p in _files_below(folder) if p.name != MANIFEST and not _is_temporary(p)]
    if not manifest.exists():
        manifest.record(found, adopted=True)
    mark(folder, marker, what)
    return found


def is_marked(folder: str | os.PathLike, marker: str) -> bool:
    return (pathlib.Path(folder) / marker).is_file()


def is_run_folder(folder: str | os.PathLike) -> bool:
    """The one rule of "is this a run folder": a folder holding the run marker (only a marked
    folder is ever written as a run; :meth:`iac_tf.run_layout.RunLayout.is_run` asks it)."""
    folder = pathlib.Path(folder)
    return folder.is_dir() and is_marked(folder, RUN_MARKER)


def adopt_hint(folder: str | os.PathLike) -> str:
    """The one command that makes an old-style run folder a run of this tool."""
    return f"iac adopt {folder}"


def check_new_or_ours(path: str | os.PathLike, what: str, hint: str = "") -> None:
    """Raise :class:`RefusedPath` if ``path`` exists and is not a file the tool wrote and left
    unchanged (:func:`check_target`)."""
    check_target(path, what=what, hint=hint)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to the tool's own log file ``path`` (created 0644 if needed); a log only
    grows, so it is appended to, not rewritten."""
    path = pathlib.Path(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
