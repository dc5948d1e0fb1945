"""Free disk space: measure it, check it before a large write, and turn a full disk into one
clear error (:class:`DiskFullError`) that names the folder, the space needed and the config key.

Used by the slice cache (:mod:`iac_tf.data.cache`), the checkpoint and best-model writes of the
training loop, and the pre-flight checks (:mod:`iac_tf.preflight`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import tempfile

#: Kept free on top of every estimate: HDF5/checkpoint metadata, index files, other writers.
MARGIN_BYTES = 1024**2


class DiskFullError(OSError):
    """Not enough free space in ``folder`` for a write of about ``needed`` bytes."""

    def __init__(self, folder, needed: int | None, what: str, key: str = "", free: int | None = None):
        self.folder = pathlib.Path(folder)
        self.needed = needed
        self.what = what
        self.key = key
        free = free_bytes(self.folder) if free is None else free
        need = f"about {human(needed)} needed" if needed else "space needed"
        hint = f"; free some space or set {key} to a folder on a larger disk" if key else \
            "; free some space"
        msg = f"{self.folder}: not enough free space for {what} ({need}, {human(free)} free){hint}"
        super().__init__(errno.ENOSPC, msg)
        self.message = msg

    def __str__(self) -> str:
        return self.message


def human(n: int | float | None) -> str:
    """``1536 -> '1.5 KiB'``."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def existing_ancestor(path: str | os.PathLike) -> pathlib.Path:
    """``path`` or its nearest existing parent (where a folder to be created would live)."""
    path = pathlib.Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes available to this user on the file system holding ``path`` (or its parent)."""
    return shutil.disk_usage(existing_ancestor(path)).free


def check_free_space(folder, needed: int, what: str, key: str = "") -> None:
    """Raise :class:`DiskFullError` unless ``needed`` bytes plus :data:`MARGIN_BYTES` are free."""
    free = free_bytes(folder)
    if free < needed + MARGIN_BYTES:
        raise DiskFullError(folder, needed + MARGIN_BYTES, what, key, free)


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` with ``ENOSPC`` / ``EDQUOT``, or TensorFlow's error for it (a
    ``ResourceExhaustedError`` / other ``OpError`` whose message says the disk is full)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return type(exc).__name__.endswith("Error") and (
        "No space left on device" in text or "Disk quota exceeded" in text)


@contextlib.contextmanager
def disk_full_guard(folder, what: str, key: str = "", needed: int | None = None, cleanup=()):
    """Re-raise a full-disk error inside the block as :class:`DiskFullError` naming ``folder``,
    after deleting the partial files / folders ``cleanup`` (paths or a callable returning them)."""
    try:
        yield
    except DiskFullError:
        _remove(cleanup)
        raise
    except Exception as exc:  # noqa: BLE001 - only full-disk errors are translated
        if not is_disk_full(exc):
            raise
        _remove(cleanup)
        raise DiskFullError(folder, needed, what, key) from None


def _remove(cleanup) -> None:
    paths = cleanup() if callable(cleanup) else cleanup
    for path in paths or ():
        path = pathlib.Path(path)
        try:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


def check_writable_folder(folder, what: str, key: str = "") -> None:
    """``folder`` is (or can be created as) a writable folder, else an ``OSError`` whose
    message names it, ``what`` goes there and the config ``key`` to change."""
    folder = pathlib.Path(folder)
    hint = f" (set {key})" if key else ""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder}: is a file, not a folder for {what}{hint}")
    parent = existing_ancestor(folder)
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{parent}: is a file, not a folder; cannot create "
                                 f"{folder} for {what}{hint}")
    reason = probe_write(parent)
    if reason:
        raise PermissionError(errno.EACCES, f"{parent}: not writable ({reason}); cannot write "
                              f"{what} there{hint}")


def probe_write(folder: pathlib.Path) -> str:
    """``""`` if a file can be created in the existing ``folder`` (tried for real: a
    read-only mount refuses even root), else the reason."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".iac_write_probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return ""
