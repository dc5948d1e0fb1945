"""The epoch log ``history.csv`` of a stage: one row per finished epoch, safe against kills."""

from __future__ import annotations

import csv
import io
import os
import pathlib
from typing import Any, Iterable, Mapping

from iac_tf.files import atomic_write_text, remove


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
        rows = self.rows()
        kept = [r for r in rows if int(r["epoch"]) <= completed_epochs]
        if len(kept) != len(rows):
            self._write(kept)

    def append(self, row: Mapping[str, Any]) -> None:
        rows = self.rows()
        rows.append({k: _fmt(v) for k, v in row.items()})
        self._write(rows)

    def _write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            remove(self.path)
            return
        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return f"{float(value):.6g}"
    return value
