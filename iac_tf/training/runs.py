"""Run folders: atomic file writes, the code version, and the resolved config of every run."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import tempfile
from typing import Any, Iterable, Mapping

import iac_tf


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def code_version() -> str:
    """``iac_tf`` version plus the git commit of the source tree when there is one."""
    version = iac_tf.__version__
    src = pathlib.Path(iac_tf.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


class CsvHistory:
    """An epoch-indexed CSV log that survives kills: rows of unfinished epochs are dropped on
    resume (:meth:`truncate`), and each append rewrites the file atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def truncate(self, completed_epochs: int) -> None:
        rows = [r for r in self.rows() if int(r["epoch"]) <= completed_epochs]
        self._write(rows)

    def append(self, row: Mapping[str, Any]) -> None:
        rows = self.rows()
        rows.append({k: _fmt(v) for k, v in row.items()})
        self._write(rows)

    def _write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            if self.path.exists():
                self.path.unlink()
            return
        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())


def _fmt(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, (np.floating, float)):
            return f"{float(value):.6g}"
    except ImportError:  # pragma: no cover
        pass
    return value
