"""The project's errors for a problem with the user's input -- a config, a dataset, a model file,
a folder, the disk, another process holding a run. The ``iac`` command shows its message as one
line and exits with status 2; any other exception is a bug and shows its traceback.

Every specific error of the package (``ConfigError``, ``DataError``, ``RefusedPath``,
``LockedError``, ...) is a :class:`UserError`. A :class:`UserError` is not a ``ValueError``:
whoever means "the user's input is wrong" catches ``UserError`` (or the specific error), so a
``ValueError`` raised by a bug is never mistaken for one.
"""


class UserError(Exception):
    """A problem with the user's input, files or environment; the message names the file or key
    and the way out."""


class UserValueError(UserError, ValueError):
    """A bad value given to a function as an argument (a batch size, a count, masks that break
    the classes' rule), from the command line or from a Python caller: ``iac`` shows it as one
    line, and a Python caller gets the ``ValueError`` that a bad argument value raises."""


class DataError(UserError):
    """Bad input data; the message names the file (or case) and the problem."""


class PrepareInterrupted(KeyboardInterrupt):
    """Ctrl-C during data preparation (the partial cache file has been removed)."""
