"""The library's console output: everything ``iac_tf`` reports goes through
``logging.getLogger("iac_tf")`` (a child logger per module). The ``iac`` command installs the
console handler below; in Python or a notebook call :func:`log_to_console` for the same text, or
configure the ``iac_tf`` logger like any other (silence it, send it to a file)::

    import logging, iac_tf.console
    iac_tf.console.log_to_console()                      # "[iac] Stage I: ..." lines
    logging.getLogger("iac_tf").setLevel(logging.WARNING)  # only warnings

Progress bars (tqdm, the Keras epoch lines) are not log records and stay as they are.
"""

from __future__ import annotations

import logging
import sys


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
                print(f"[iac] {text}", file=sys.stdout, flush=True)
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
