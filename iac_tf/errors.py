"""The project's error for a problem with the user's input -- a config, a dataset, a model file,
a folder, the disk, another process holding a run. The ``iac`` command shows its message as one
line and exits with status 2; any other exception is a bug and shows its traceback.

Every specific error of the package (``ConfigError``, ``DataError``, ``RefusedPath``,
``LockedError``, ...) is a :class:`UserError`; it stays a ``ValueError`` for callers that catch
that.
"""


class UserError(ValueError):
    """A problem with the user's input, files or environment; the message names the file or key
    and the way out."""
