"""One writer per folder: a lock file holding its holder's PID, host, command and start time.

``iac run`` (and every stage command) takes the lock of its run folder, and a slice-cache build
the lock of its cache file, before anything is written. A second process asking for a held lock
stops at once with :class:`LockedError` naming the holder. The lock is an ``fcntl`` record lock
on the file, so the kernel releases it when its process dies in any way (``SIGKILL`` included);
the next process then takes it over and says whose lock it was. The file is deleted on release.

Within one process the lock is re-entrant (``iac run`` holds the run's lock while it calls each
stage, and each stage asks for it again).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import pathlib
import socket
import sys
from typing import Iterator

from iac_tf.errors import UserError

log = logging.getLogger(__name__)

#: lock path -> [open file descriptor, depth] of the locks this process holds
_HELD: dict[str, list[int]] = {}


class LockedError(UserError):
    """The folder is in use by another live process (the message names it)."""


def _holder_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().isoformat(timespec="seconds"),
                       "command": " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]])
                       if sys.argv and sys.argv[0] else "python"})


def _describe(raw: str) -> str:
    try:
        info = json.loads(raw)
        return (f"PID {info['pid']} on {info['host']} (since {info['started']}: "
                f"{info['command']})")
    except (ValueError, KeyError, TypeError):
        return "another process"


def read_holder(path: str | os.PathLike) -> str | None:
    """Who holds the lock at ``path`` right now (a description), or ``None`` if it is free."""
    path = pathlib.Path(path)
    if str(path) in _HELD:
        return _describe(_holder_text())
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return _describe(_read(fd))
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536).decode(errors="replace").strip()


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike, what: str) -> Iterator[pathlib.Path]:
    """Hold the lock file ``path`` for the block (``what`` names the locked thing in messages).

    Raises:
        LockedError: a live process holds it; nothing was written.
    """
    path = pathlib.Path(path).absolute()
    key = str(path)
    if key in _HELD:  # re-entrant within this process
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    made = _make_parents(path.parent, what)
    try:
        fd = _acquire(path, what)
    except BaseException:
        _remove_empty(made)
        raise
    _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        del _HELD[key]
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the record lock
        _remove_empty(made)


def _make_parents(folder: pathlib.Path, what: str) -> list[pathlib.Path]:
    """``mkdir -p folder``; returns the folders it created (deepest first), so a refused or
    finished command that wrote nothing else leaves no empty folders behind."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{probe}: is a file, not a folder; cannot "
                                 f"create {folder} for {what} (set output_dir)")
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[pathlib.Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: something was written there
            return


def _acquire(path: pathlib.Path, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise LockedError(
                f"{what} is in use by {_describe(holder)}; lock file {path}. Wait for that "
                "process to finish (or stop it), then rerun; a lock whose process has ended is "
                "taken over automatically") from None
        try:  # the file may have been deleted (released) between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = _read(fd)
        if previous:
            log.warning("took over the lock of %s: %s, whose process has ended",
                        what, _describe(previous))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, _holder_text().encode())
        os.fsync(fd)
        return fd
