"""The library's console output: everything ``iac_tf`` reports goes through
``logging.getLogger("iac_tf")`` (a child logger per module). The ``iac`` command installs the
console handler below; in Python or a notebook call :func:`log_to_console` for the same text, or
configure the ``iac_tf`` logger like any other (silence it, send it to a file)::

    import logging, iac_tf.console
    iac_tf.console.log_to_console()                      # "[iac] Stage I: ..." lines
    logging.getLogger("iac_tf").setLevel(logging.WARNING)  # only warnings

Progress bars (tqdm, the Keras epoch lines) are not log records and stay as they are; every
finished epoch is also one log record (its time, the selection value and an ETA). A run writes
the same records, with the date and time, to ``RUN/log.txt`` (:func:`run_log`, appended on
resume).
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sys
import time
from collections.abc import Callable, Iterator


class ConsoleHandler(logging.Handler):
    """``[iac] message`` on the current ``sys.stdout`` for information, ``iac: warning: message``
    on the current ``sys.stderr`` for warnings and errors (the streams are looked up at each
    record, so redirected streams are honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                print(f"iac: {record.levelname.lower()}: {text}", file=sys.stderr, flush=True)
            else:
                clock = time.strftime("%H:%M:%S", time.localtime(record.created))
                print(f"[iac {clock}] {text}", file=sys.stdout, flush=True)
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def log_to_console(level: int = logging.INFO) -> logging.Logger:
    """Show the ``iac_tf`` logger's records at ``level`` and above on the console (once per
    process; a second call only changes the level)."""
    logger = logging.getLogger("iac_tf")
    logger.setLevel(level)
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
        logger.propagate = False
    return logger


class RunLogHandler(logging.Handler):
    """Appends every ``iac_tf`` record, with date and time, to a run's ``log.txt``. Records
    arrive before the run folder is the tool's (the checks run first): they are held back and
    written once ``owned()`` is true, and dropped if it never becomes true (a refused run
    writes nothing)."""

    FORMAT = "%(asctime)s %(levelname)-7s %(message)s"

    def __init__(self, path: pathlib.Path, owned: Callable[[], bool]):
        super().__init__()
        self.path = pathlib.Path(path)
        self.owned = owned
        self.pending: list[str] = []
        self.setFormatter(logging.Formatter(self.FORMAT, "%Y-%m-%d %H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        from iac_tf.files import append_text  # noqa: PLC0415 - console stays import-light

        try:
            self.pending.append(self.format(record) + "\n")
            if self.owned():
                append_text(self.path, "".join(self.pending))
                self.pending.clear()
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


@contextlib.contextmanager
def run_log(path: pathlib.Path, owned: Callable[[], bool], command: str = "") -> Iterator[None]:
    """While the block runs, the ``iac_tf`` records also go to ``path`` (see
    :class:`RunLogHandler`), starting with a line naming ``command``."""
    logger = logging.getLogger("iac_tf")
    handler = RunLogHandler(path, owned)
    logger.addHandler(handler)
    if command:
        handler.pending.append(time.strftime("%Y-%m-%d %H:%M:%S") + f" START   {command}\n")
    try:
        yield
    finally:
        logger.removeHandler(handler)
