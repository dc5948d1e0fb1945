"""The code version written into every run folder (``version.txt``).

``iac_tf.__version__`` plus a description of the source tree, taken from the first of:

1. ``git describe --always --dirty`` of the package's source tree (a clone);
2. the environment variable ``IAC_CODE_VERSION`` (e.g. set by ``docker build --build-arg``);
3. the file ``iac_tf/_build_version.txt`` (written at build time into an image or a wheel,
   ignored by git).

Without any of them it is the bare package version.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import iac_tf

ENV_VAR = "IAC_CODE_VERSION"
BUILD_FILE = "_build_version.txt"


def _git_describe(src: pathlib.Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(src), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_version() -> str:
    """``<package version>+<git commit | $IAC_CODE_VERSION | _build_version.txt>``."""
    src = pathlib.Path(iac_tf.__file__).resolve().parent
    described = _git_describe(src) if (src.parent / ".git").exists() else ""
    if not described:
        described = os.environ.get(ENV_VAR, "").strip()
    if not described:
        try:
            described = (src / BUILD_FILE).read_text().strip()
        except OSError:
            described = ""
    return f"{iac_tf.__version__}+{described}" if described else iac_tf.__version__
