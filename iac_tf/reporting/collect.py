"""Read run folders (the layout of :mod:`iac_tf.run_layout`) into records for the report.

Whether a run is *finished* is the layout's rule (:meth:`iac_tf.run_layout.RunLayout.status`,
the same one ``iac grid`` uses): whatever is absent is named in ``RunStatus.missing``, so the
report can list it instead of dropping the run.

A file that is there but cannot be read as expected (not JSON, cut off, a column missing, a
cell that is not a number) is never read as "no data" in silence: :func:`read_run` records one
line per problem in :attr:`RunRecord.warnings` (naming the file and the problem), and a run
whose evaluation table is unreadable is not counted as finished (its status lists
``evaluation (unreadable ...)``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import pathlib

import numpy as np
import yaml

from iac_tf.config.data import TEST_SPLIT
from iac_tf.errors import UserError
from iac_tf.run_layout import (DICE_CSV, DICE_PER_CASE, HISTORY, SUMMARY, VOLUMETRIC_CSV,
                               RunLayout, RunStatus, epoch_number, sweep_epoch)
from iac_tf.run_unet import unet_label, verified

#: columns of ``dice_per_case.csv`` that are not models (``split``, ``metric``: the split and the
#: decision rule the table scores, :mod:`iac_tf.evaluation.report`)
NOT_MODELS = {"case", "class", "gain", "split", "metric"}
HD95_SUFFIX = "_hd95_mm"  # volumetric_per_case.csv: <model>_hd95_mm
# column names of the slice-level soft Dice, current first (older runs wrote "dice"/"val_dice")
TRAIN_DICE = ("soft_dice", "dice")
VAL_DICE = ("val_soft_dice", "val_dice")
BEST_VAL = ("best_val_soft_dice", "best_val_dice")


def first(row: dict, keys: tuple[str, ...]):
    """The value of the first of ``keys`` present in ``row`` (None if none is)."""
    for k in keys:
        if k in row:
            return row[k]
    return None


@dataclasses.dataclass
class ClassScores:
    """Per-case scores of one split of a run, per class.

    ``dice[model]`` and ``hd95[model]`` are arrays (cases, classes) in the order of ``cases``
    and ``classes`` (NaN: the class is absent from both the label and the prediction of that
    case, or the model has no value); ``hd95`` is empty when the run has no volumetric scores
    of the split (npz data). ``dice_unit`` says what the Dice scored: ``slices`` (the 2D
    slices of the cache, ``evaluation/dice_per_case.csv``) or ``volumes`` (whole volumes,
    ``test_dt``); the HD95 is always of whole volumes.
    """

    split: str
    dice_unit: str
    cases: list[str]
    classes: list[str]
    dice: dict[str, np.ndarray]
    hd95: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunRecord:
    """One run as the report sees it.

    ``scores[model]``: mean over the scored cases of the case's mean Dice over classes (the
    number of ``stats.json``'s ``overall``); ``case_scores[model]``: those per-case values, of
    ``val_dt`` as read, or of ``test_dt`` after :func:`use_split` chose it.
    ``test_case_scores``: the per-case Dice of the run's ``test_dt`` volumes (empty without a
    test split).
    ``warnings``: files of the run that are there but could not be read as expected, one line
    each (``FILE: problem``, the file relative to the run folder).
    ``class_scores[split]``: the per-case Dice (and HD95) per class of the evaluation split and,
    where the run has it, of ``test_dt`` (:class:`ClassScores`).
    ``rule``: the decision rule the evaluation scored with (``labels`` or ``paper_channels``,
    from ``evaluation/stats.json``; ``not recorded`` for evaluations that predate it).
    """

    run_dir: pathlib.Path
    name: str
    dataset: str
    backbone: str
    version: str
    status: RunStatus
    config: dict
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    case_scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    epoch_scores: dict[int, float] = dataclasses.field(default_factory=dict)
    epoch_score_source: str = ""
    train_dice: float = math.nan
    val_soft_dice: float = math.nan
    stage2_seconds: float = math.nan
    stage2_epochs: str = ""  # searched / planned, e.g. "62/200 (stable)" with stop_when_stable
    stage2_seconds_saved: float = math.nan  # estimate of the stopped search's epochs left
    stage3_seconds: float = math.nan
    device: str = "not recorded"
    machine: str = "not recorded"  # machine.json, :func:`machine_text`
    warnings: list[str] = dataclasses.field(default_factory=list)
    test_case_scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    split: str = "val_dt"
    class_scores: dict[str, ClassScores] = dataclasses.field(default_factory=dict)
    rule: str = "not recorded"

    @property
    def methods(self) -> list[str]:
        """Models compared with the U-Net in this run (IAC first), sweep columns excluded."""
        names = [m for m in self.scores if m != "unet" and sweep_epoch(m) is None]
        return sorted(names, key=lambda m: (m != "iac", m))


class UnreadableFile(UserError):
    """A run's file is there but cannot be read as expected (the message says why)."""


def _csv_rows(path: pathlib.Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV the tool wrote; :class:`UnreadableFile` if it is cut off or
    damaged (not text, no header, a row with another number of fields than the header, no
    line break at the end)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile("not a text file") from None
    if not text.strip():
        raise UnreadableFile("empty (cut off?)")
    try:
        header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UnreadableFile(f"not a valid CSV ({exc})") from None
    if not text.endswith("\n"):
        raise UnreadableFile("ends in the middle of a line (cut off?)")
    for k, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise UnreadableFile(f"line {k} has {len(row)} field(s), the header {len(header)} "
                                 "(cut off or damaged?)")
    return header, rows


def _number(cell: str, where: str) -> float:
    """A CSV cell as a float: empty means NaN; anything else must be a number."""
    if cell.strip() == "":
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise UnreadableFile(f"{where}: {cell!r} is not a number") from None


def class_table(path: pathlib.Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """``(cases, classes, {model: Dice (cases, classes)})`` of a ``dice_per_case.csv``, cases
    and classes in first-seen order (a pair without a row is NaN).

    Raises :class:`UnreadableFile` when the table is cut off or damaged, lacks the ``case``,
    ``class`` or ``unet`` column, has no rows, or holds a cell that is not a number.
    """
    header, rows = _csv_rows(pathlib.Path(path))
    absent = [c for c in ("case", "class", "unet") if c not in header]
    if absent:
        raise UnreadableFile(f"no column {', '.join(absent)} (columns: {', '.join(header)})")
    if not rows:
        raise UnreadableFile("no rows, only the header (cut off?)")
    models = [c for c in header if c not in NOT_MODELS]
    return _grid(rows, header, {m: m for m in models})


def _grid(rows, header, columns: dict[str, str]):
    """``(cases, classes, {name: values (cases, classes)})`` of CSV ``rows``, ``columns``
    mapping each name to its column."""
    at = {c: header.index(c) for c in header}
    cases = list(dict.fromkeys(r[at["case"]] for r in rows))
    classes = list(dict.fromkeys(r[at["class"]] for r in rows))
    out = {name: np.full((len(cases), len(classes)), math.nan) for name in columns}
    row_of, col_of = {c: i for i, c in enumerate(cases)}, {c: k for k, c in enumerate(classes)}
    for k, r in enumerate(rows, 2):
        i, j = row_of[r[at["case"]]], col_of[r[at["class"]]]
        for name, col in columns.items():
            out[name][i, j] = _number(r[at[col]], f"line {k}, column {col}")
    return cases, classes, out


def case_scores(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Per-case mean Dice over classes (NaN classes skipped) for every model column of a
    ``dice_per_case.csv`` (errors as :func:`class_table`)."""
    _, _, dice = class_table(path)
    return {m: _case_means(v) for m, v in dice.items()}


def _case_means(values: np.ndarray) -> np.ndarray:
    """Row means of ``values`` (cases, classes) over the non-NaN classes; NaN for a row of NaN."""
    out = np.full(len(values), math.nan)
    for i, row in enumerate(values):
        if np.any(~np.isnan(row)):
            out[i] = float(np.nanmean(row))
    return out


def hd95_table(path: pathlib.Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """``(cases, classes, {model: HD95 mm (cases, classes)})`` of a ``volumetric_per_case.csv``
    (columns ``case, class, <model>_dice, <model>_hd95_mm``); errors as :func:`class_table`."""
    header, rows = _csv_rows(pathlib.Path(path))
    absent = [c for c in ("case", "class") if c not in header]
    models = {c[: -len(HD95_SUFFIX)]: c for c in header if c.endswith(HD95_SUFFIX)}
    if absent or not models:
        raise UnreadableFile(f"no column {', '.join(absent) or '<model>' + HD95_SUFFIX} "
                             f"(columns: {', '.join(header)})")
    if not rows:
        raise UnreadableFile("no rows, only the header (cut off?)")
    return _grid(rows, header, models)


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


class _Reader:
    """Reads the files of one run, collecting a warning per file that cannot be read."""

    def __init__(self, run_dir: pathlib.Path):
        self.run_dir = run_dir
        self.warnings: list[str] = []

    def warn(self, path: pathlib.Path, problem: str) -> None:
        try:
            name = path.relative_to(self.run_dir).as_posix()
        except ValueError:
            name = str(path)
        self.warnings.append(f"{name}: {problem}")

    def json(self, path: pathlib.Path, *keys: str) -> dict:
        """The JSON object in ``path`` ({} if absent); a warning if it is not a JSON object or
        lacks one of ``keys``."""
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.warn(path, f"not valid JSON ({_short(exc)})")
            return {}
        if not isinstance(data, dict):
            self.warn(path, f"not a JSON object (found {type(data).__name__})")
            return {}
        absent = [k for k in keys if k not in data]
        if absent:
            self.warn(path, f"no {', '.join(absent)}")
        return data

    def yaml(self, path: pathlib.Path) -> dict:
        if not path.exists():
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            self.warn(path, f"not valid YAML ({_short(exc)})")
            return {}
        if data is not None and not isinstance(data, dict):
            self.warn(path, f"not a YAML mapping (found {type(data).__name__})")
            return {}
        return data or {}

    def history(self, path: pathlib.Path, *columns: tuple[str, ...]) -> list[dict]:
        """The rows of a ``history.csv`` ([] if absent); a warning if it is cut off or damaged
        or lacks one of ``columns`` (each a tuple of accepted names)."""
        if not path.exists():
            return []
        try:
            header, rows = _csv_rows(path)
        except (OSError, UnreadableFile) as exc:
            self.warn(path, _short(exc))
            return []
        absent = [names[0] for names in columns if not any(n in header for n in names)]
        if absent:
            self.warn(path, f"no column {', '.join(absent)} (columns: {', '.join(header)})")
        return [dict(zip(header, r)) for r in rows]

    def number(self, path: pathlib.Path, value, what: str) -> float:
        """``value`` as a float; a warning naming ``what`` when it is there but not a number."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return math.nan
        x = _float(value)
        if math.isnan(x) and str(value).strip().lower() != "nan":
            self.warn(path, f"{what}: {value!r} is not a number")
        return x


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _split_scores(read: _Reader, folder: pathlib.Path, split: str, unit: str,
                  what: str) -> tuple[ClassScores | None, bool]:
    """``(scores, unreadable)`` of the evaluation folder ``folder`` (``evaluation/`` or
    ``evaluation/test_dt/``): its ``dice_per_case.csv`` per class, with the HD95 of its
    ``volumetric_per_case.csv`` where there is one. ``(None, False)``: no Dice table;
    ``(None, True)``: a Dice table that cannot be read (a warning says why). An unreadable
    volumetric table only leaves the HD95 out (with a warning)."""
    path = folder / DICE_PER_CASE
    if not path.exists():
        return None, False
    try:
        cases, classes, dice = class_table(path)
    except (OSError, UnreadableFile) as exc:
        read.warn(path, f"{_short(exc)}; the run's {what} are left out")
        return None, True
    scores = ClassScores(split, unit, cases, classes, dice)
    vol = folder / VOLUMETRIC_CSV
    if vol.exists():
        try:
            v_cases, v_classes, hd = hd95_table(vol)
        except (OSError, UnreadableFile) as exc:
            read.warn(vol, f"{_short(exc)}; the run's {split} HD95 is left out")
        else:  # in the Dice table's order; a pair the volumetric table lacks is NaN
            rows = [v_cases.index(c) if c in v_cases else None for c in cases]
            cols = [v_classes.index(c) if c in v_classes else None for c in classes]
            for m, values in hd.items():
                grid = np.full((len(cases), len(classes)), math.nan)
                for i, r in enumerate(rows):
                    for j, c in enumerate(cols):
                        if r is not None and c is not None:
                            grid[i, j] = values[r, c]
                scores.hd95[m] = grid
    return scores, False


def _set_scores(rec: RunRecord, per_case: dict[str, np.ndarray], split: str) -> None:
    """The run's scores from ``per_case`` (per-case Dice of ``split``), the sweep's epochs
    included."""
    rec.split, rec.case_scores = split, per_case
    rec.scores = {m: float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan
                  for m, v in per_case.items()}
    rec.epoch_scores = {}
    for m, v in rec.scores.items():
        epoch = sweep_epoch(m)
        if epoch is not None:
            rec.epoch_scores[epoch] = v
            rec.epoch_score_source = f"per-case Dice on {split} (evaluation)"


def use_split(records: list[RunRecord]) -> str:
    """The split every table scores on: ``test_dt`` (whole volumes nothing selected on) when
    every run with scores has it, else ``val_dt`` (the split that also selected each best
    epoch: in-sample). Runs of both kinds in one report are refused (their tables would
    compare numbers of different splits)."""
    scored = [r for r in records if r.case_scores or r.test_case_scores]
    with_test = [r.name for r in scored if r.test_case_scores]
    without = [r.name for r in scored if not r.test_case_scores]
    if with_test and without:
        raise UserError(
            f"{len(with_test)} run(s) have test_dt scores ({', '.join(with_test)}) and "
            f"{len(without)} do not ({', '.join(without)}): one report compares its runs on one "
            "split. Report them separately (one `iac report` per group), or give the others a "
            "test split (data.test_fraction or labelsTs) and run `iac evaluate`")
    if with_test:
        for r in scored:
            _set_scores(r, r.test_case_scores, "test_dt")
        return "test_dt"
    return "val_dt"


def machine_text(machines: dict) -> str:
    """``machine.json`` (part -> machines) as a table cell: one description when every part ran
    on the same kind of machine, else ``part: description`` per part."""
    from iac_tf.machine import kind, short  # noqa: PLC0415 - the report's only use

    entries = [(part, m) for part, ms in machines.items() if isinstance(ms, list)
               for m in ms if isinstance(m, dict)]
    if not entries:
        return "not recorded"
    kinds = {json.dumps(kind(m), sort_keys=True) for _, m in entries}
    if len(kinds) == 1:
        return short(entries[0][1])
    return "; ".join(f"{part}: {short(m)}" for part, m in entries)


def read_run(run_dir) -> RunRecord:
    """The run in ``run_dir`` as the report sees it; files it cannot read are named in
    :attr:`RunRecord.warnings`, an unreadable evaluation table in the status' ``missing``."""
    run_dir = pathlib.Path(run_dir)
    layout = RunLayout(run_dir)
    read = _Reader(run_dir)
    cfg = read.yaml(layout.config)
    grid = read.json(layout.grid_record)
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    dataset = grid.get("dataset") or (
        pathlib.Path(str(data.get("root", ""))).name if data.get("format") in (None, "nnunet", "npz")
        else str(data.get("format")))
    unet = cfg.get("unet") if isinstance(cfg.get("unet"), dict) else {}
    unet_record = layout.read_unet_record()
    if unet_record is not None:
        verified(layout)  # refuses a run whose own U-Net no longer matches its hash
    version_file = layout.version
    rec = RunRecord(
        run_dir=run_dir, name=run_dir.name, dataset=dataset or "?",
        backbone=(grid.get("backbone") or unet_label(cfg, unet_record)
                  or unet.get("backbone", "?")),
        version=version_file.read_text().strip() if version_file.exists() else "not recorded",
        status=layout.status(cfg), config=cfg, device=grid.get("device", "not recorded"),
    )
    machines = read.json(layout.machine_record)
    if machines:
        rec.machine = machine_text(machines)
    evaluation = cfg.get("evaluation") if isinstance(cfg.get("evaluation"), dict) else {}
    val, unreadable = _split_scores(read, layout.evaluation, str(evaluation.get("split", "val_dt")),
                                    "slices", "scores")
    if unreadable:  # there but unreadable: the run is not finished
        rec.status = dataclasses.replace(
            rec.status, missing=[*rec.status.missing, f"evaluation (unreadable {DICE_CSV.as_posix()})"])
    _set_scores(rec, {m: _case_means(v) for m, v in val.dice.items()} if val else {}, "val_dt")
    test, _ = _split_scores(read, layout.test_evaluation, TEST_SPLIT, "volumes", "test_dt scores")
    rec.test_case_scores = {m: _case_means(v) for m, v in test.dice.items()} if test else {}
    rec.class_scores = {s.split: s for s in (val, test) if s is not None}
    if val:
        rule = read.json(layout.stats).get("rule")
        if isinstance(rule, dict) and rule.get("metric"):
            rec.rule = str(rule["metric"])
    if not rec.epoch_scores:  # a sweep without evaluation columns: Stage III's own val Dice
        for key, d in layout.stage3_dirs().items():
            path = d / SUMMARY
            epoch = epoch_number(key)
            if epoch is not None and path.exists():
                summary = read.json(path)
                if summary and not any(k in summary for k in BEST_VAL):
                    read.warn(path, f"no {BEST_VAL[0]}")
                rec.epoch_scores[epoch] = read.number(path, first(summary, BEST_VAL), BEST_VAL[0])
                rec.epoch_score_source = "Stage III best val_dt slice Dice (no evaluation column)"
    s1_path = layout.stage(1) / SUMMARY
    s1 = read.json(s1_path, "best_epoch")
    if s1.get("best_epoch") is not None:
        best = s1["best_epoch"]
        hist = layout.stage(1) / HISTORY
        rows = read.history(hist, ("epoch",), TRAIN_DICE, VAL_DICE)
        hits = [r for r in rows if str(r.get("epoch")) == str(best)]
        if rows and not hits:
            read.warn(hist, f"no row for the best epoch {best} of "
                            f"{s1_path.relative_to(run_dir).as_posix()}")
        for r in hits:
            rec.train_dice = read.number(hist, first(r, TRAIN_DICE), f"epoch {best}, {TRAIN_DICE[0]}")
            rec.val_soft_dice = read.number(hist, first(r, VAL_DICE), f"epoch {best}, {VAL_DICE[0]}")
    search_path = layout.search_time
    search = read.json(search_path, "total_seconds")
    if "total_seconds" in search:
        rec.stage2_seconds = read.number(search_path, search["total_seconds"], "total_seconds")
    if "epochs" in search:
        planned = search.get("planned_epochs", search["epochs"])
        rec.stage2_epochs = (f"{search['epochs']}/{planned}"
                             + (" (stable)" if search.get("stopped_early") else ""))
    if search.get("stopped_early") and "seconds_saved_estimate" in search:
        rec.stage2_seconds_saved = read.number(search_path, search["seconds_saved_estimate"],
                                               "seconds_saved_estimate")
    s3_secs = [_history_seconds(read, d / HISTORY) for d in layout.stage3_dirs().values()]
    s3_secs = [s for s in s3_secs if not math.isnan(s)]
    if s3_secs:
        rec.stage3_seconds = float(sum(s3_secs))
    unreadable = _unreadable_parts(read, layout)
    if unreadable:  # a part whose record cannot be read is not finished
        rec.status = dataclasses.replace(rec.status, missing=[*rec.status.missing, *unreadable])
    rec.warnings = read.warnings
    return rec


def _unreadable_parts(read: _Reader, layout: RunLayout) -> list[str]:
    """``PART (unreadable FILE)`` for each trained part (Stage I, Stage III and its sweep
    epochs, each comparison) whose ``summary.json`` or ``history.csv`` is there but cannot be
    read (a warning names the problem; each file is warned about once)."""
    parts = {layout.rel(layout.stage(1)): layout.stage(1)}
    parts.update({layout.rel(folder): folder for folder in layout.stage3_dirs().values()})
    if layout.summary(layout.stage(3)).exists():
        parts[layout.rel(layout.stage(3))] = layout.stage(3)
    if layout.compare_root.is_dir():
        parts.update({layout.rel(d): d for d in sorted(layout.compare_root.iterdir())
                      if d.is_dir()})
    out = []
    for part, folder in parts.items():
        for name in (SUMMARY, HISTORY):
            path = folder / name
            if not path.exists():
                continue
            rel = path.relative_to(read.run_dir).as_posix()
            if not any(w.startswith(rel + ":") for w in read.warnings):
                before = len(read.warnings)
                read.json(path) if name == SUMMARY else read.history(path, ("epoch",))
                if len(read.warnings) == before:
                    continue
            out.append(f"{part} (unreadable {rel})")
    return out


def _history_seconds(read: _Reader, path: pathlib.Path) -> float:
    """Seconds of all epochs in a Stage III ``history.csv`` (NaN, with a warning, when a time
    is not a number)."""
    rows = read.history(path, ("epoch_time_s",))
    if not rows or "epoch_time_s" not in rows[0]:
        return math.nan
    secs = [read.number(path, r.get("epoch_time_s"), f"epoch {r.get('epoch', '?')}, epoch_time_s")
            for r in rows]
    return float(sum(secs))


def expand_run_dirs(paths) -> list[pathlib.Path]:
    """Run folders from the given paths: a folder with ``config.yaml`` (or a path that does not
    exist: it is reported missing) is a run; a folder without one holding run folders is a
    collection of runs (e.g. ``runs/``). A folder named twice is listed once."""
    out, seen = [], set()
    for p in map(pathlib.Path, paths):
        found = [p]
        if p.is_dir() and not RunLayout(p).config.exists():
            children = sorted(c for c in p.iterdir() if c.is_dir() and RunLayout(c).config.exists())
            if children:
                found = children
        for run in found:
            key = run.resolve()
            if key not in seen:
                seen.add(key)
                out.append(run)
    return out
