"""One writer per folder: a lock file holding its holder's PID, host, command and start time.

``iac run`` (and every stage command) takes the lock of its run folder, and a slice-cache build
the lock of its cache file, before anything is written. A second process asking for a held lock
stops at once with :class:`LockedError` naming the holder. The lock is an ``fcntl`` record lock
on the file, so the kernel releases it when its process dies in any way (``SIGKILL`` included);
the next process then takes it over and says whose lock it was. The file is deleted on release.

A run's lock also holds its marker inside the run folder (:func:`attach`), so a lock file
deleted or replaced beside the folder does not let a second writer in, and every write into a
run checks that its lock file is still the one its process locked (:func:`verify`).

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

#: lock path -> [open file descriptor, depth, descriptors of attached locks] of the locks this
#: process holds
_HELD: dict[str, list] = {}


class LockedError(UserError):
    """The folder is in use by another live process (the message names it)."""


class LockLost(UserError):
    """The lock file this process holds was removed or replaced on disk: another process may now
    write what it guards, so this one stops before its next write."""


def holds(path: str | os.PathLike) -> bool:
    """This process holds the lock at ``path``."""
    return str(pathlib.Path(path).absolute()) in _HELD


def verify(path: str | os.PathLike) -> None:
    """Raise :class:`LockLost` unless the lock file at ``path`` (held by this process) is still
    the file this process locked: a lock file deleted or replaced while its holder lives would
    let a second writer in."""
    path = pathlib.Path(path).absolute()
    held = _HELD.get(str(path))
    if held is None:
        return
    try:
        same = os.stat(path).st_ino == os.fstat(held[0]).st_ino
    except OSError:
        same = False
    if not same:
        raise LockLost(f"{path}: this lock file was removed or replaced while this process (PID "
                       f"{os.getpid()}) held it, so another process may be writing the same "
                       "folder; stopping before the next write. Make sure no other process "
                       "writes it, then rerun the same command to resume")


def attach(path: str | os.PathLike, extra: str | os.PathLike, what: str) -> None:
    """While this process holds the lock ``path``, also hold a lock (``flock``) on the existing
    file ``extra`` (a run's marker inside the run folder). A second writer must get both, so deleting
    or replacing the lock file beside the folder does not let it in. Released with ``path``."""
    held = _HELD.get(str(pathlib.Path(path).absolute()))
    extra = pathlib.Path(extra)
    if held is None or not extra.is_file():
        return
    try:
        fd = os.open(extra, os.O_RDWR)
    except OSError:  # a read-only marker: the lock file alone guards the folder
        return
    key = os.fstat(fd).st_ino
    if any(k == key for k, _ in held[2]):
        os.close(fd)
        return
    try:  # flock, not lockf: this process may open and close the marker elsewhere (reading
        # it) without releasing the lock, which a POSIX record lock would not survive
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
            return  # a file system without flock: the lock file alone guards the folder
        raise LockedError(
            f"{what} is in use by another live process: it holds {extra}, although the lock "
            f"file {path} is gone or new (removed while that process runs?). Nothing was "
            "written. Wait for that process to finish (or stop it), then rerun") from None
    held[2].append((key, fd))


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


def _released(raw: str) -> str:
    """Why a lock with holder text ``raw`` was free: on this host its process has ended; of
    another host the tool only knows the lock was released (ended, or its node lost the lock)."""
    try:
        host = json.loads(raw).get("host")
    except (ValueError, AttributeError):
        host = None
    if host == socket.gethostname():
        return "whose process has ended"
    return ("whose lock was released (this host cannot tell whether that process ended or its "
            "node lost the lock, e.g. an expired NFS lease)")


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
    _HELD[key] = [fd, 1, []]
    try:
        yield path
    finally:
        attached = _HELD.pop(key)[2]
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # never another process' new lock
                path.unlink()
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the record lock
        for _, extra_fd in attached:
            os.close(extra_fd)
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
            log.warning("took over the lock of %s: %s, %s", what, _describe(previous),
                        _released(previous))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, _holder_text().encode())
        os.fsync(fd)
        return fd
