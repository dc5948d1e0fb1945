"""The run folder and its one owner, :class:`RunLayout`: every path of a run, every "is this
finished" rule, the run's lock and its dataset record. The stages, ``--restart``, the
pre-flight, ``iac report``, ``iac grid`` and ``iac predict`` all ask it::

    runs/NAME/
      .iac-run                         marker: a run folder written by iac_tf
      config.yaml, version.txt         resolved experiment config and code version
      log.txt                          the console of every command that wrote the run, timed
      data_record.json                 the dataset the run was trained on: absolute path,
                                       fingerprint, classes and channel modalities
      machine.json                     the machine each part ran on (CPU, instruction sets,
                                       TensorFlow build, oneDNN, threads; :mod:`iac_tf.machine`)
      models.json                      index: model name -> best .keras of that model (see below)
      unet_record.json, unet/          with unet.pretrained: the run's own copy of that U-Net
                                       (unet/<its file or folder name>), its SHA-256, where it
                                       came from and its label "custom: <name>, <8 hex>"
                                       (:mod:`iac_tf.run_unet`)
      stage1/                          best_model.keras, history.csv, summary.json, ...
      unet_score.json                  a given U-Net's val_dt score before it is improved
      stage2/                          genotypes/epoch_XXX.json, arch/, history.csv, search_time.json
      stage3/                          the IAC U-Net (best_model.keras, savedmodel/, history.csv,
                                       summary.json); with a genotype-epoch sweep one sub-folder
                                       per epoch: stage3/epoch_025/, stage3/epoch_050/, ...
      compare/<method>/                each comparison (attention, residual_attention, nested,
                                       unet_continued, ...): best_model.keras, history.csv, summary.json
      evaluation/                      dice_per_case.csv (columns: split, metric, case, class,
                                       unet, <method>...), stats.json, dice_table.md, plots
    runs/.NAME.lock                    held while a process writes the run (:mod:`iac_tf.locks`)

``models.json`` maps a model name (``unet``, ``iac``, ``iac_epoch_025``, ``attention``,
``unet_continued``, ...) to its best model file, relative to the run folder where it lies inside
it (else absolute: a user's pre-trained U-Net in a run made before the run kept its own copy).
``iac`` is always the run's final IAC U-Net.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import pathlib
from typing import Any, Iterator

import yaml

from iac_tf.config import to_dict
from iac_tf.config.stages import Stage1Config, Stage2Config, Stage3Config
from iac_tf.config.data import TEST_SPLIT
from iac_tf.data.fingerprint import SCHEME, differences
from iac_tf.errors import UserError
from iac_tf.files import (RUN_MARKER, RefusedPath, adopt_folder, adopt_hint, atomic_write_json, is_run_folder,
                          looks_like_old_run, mark, run_lock_path)
from iac_tf.locks import attach, folder_lock, read_holder

MODELS_INDEX = "models.json"
DATA_RECORD = "data_record.json"
UNET_RECORD = "unet_record.json"  # the run's copy of unet.pretrained (iac_tf.run_unet)
UNET_DIR = "unet"
MACHINE_RECORD = "machine.json"
BEST_MODEL = "best_model.keras"
SUMMARY = "summary.json"
HISTORY = "history.csv"
SEARCH_TIME = "search_time.json"
UNET_SCORE = "unet_score.json"  # the given U-Net scored on val_dt before it is improved
GENOTYPES = "genotypes"  # Stage II: genotypes/epoch_XXX.json (and .png)
ARCH = "arch"  # Stage II: arch/epoch_XXX.json (alpha, beta)
SAVEDMODEL = "savedmodel"  # Stage III: the exported SavedModel
UNIT_RECORD = "unit.yaml"  # compare/<model>/: the stages and training keys it depends on
DICE_CSV = pathlib.Path("evaluation") / "dice_per_case.csv"
STAGES = (1, 2, 3)


class DatasetMismatch(UserError):
    """The run was made on other data than the config names now (the message names both)."""


@dataclasses.dataclass
class RunStatus:
    """What a run still lacks (``missing``: parts named as in the layout)."""

    run_dir: pathlib.Path
    missing: list[str]
    exists: bool

    @property
    def finished(self) -> bool:
        return self.exists and not self.missing

    @property
    def state(self) -> str:
        if not self.exists:
            return "not started"
        return "finished" if not self.missing else "partial"


class RunLayout:
    """The paths and rules of one run folder ``root`` (nothing is read or written on creation)."""

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)

    # ------------------------------------------------------------------ paths
    @property
    def config(self) -> pathlib.Path:
        return self.root / "config.yaml"

    @property
    def version(self) -> pathlib.Path:
        return self.root / "version.txt"

    @property
    def log(self) -> pathlib.Path:
        """Every console record of every command that wrote the run, with date and time."""
        return self.root / "log.txt"

    @property
    def models_index(self) -> pathlib.Path:
        return self.root / MODELS_INDEX

    @property
    def data_record(self) -> pathlib.Path:
        return self.root / DATA_RECORD

    @property
    def unet_record(self) -> pathlib.Path:
        """The record of the run's own copy of ``unet.pretrained`` (:mod:`iac_tf.run_unet`)."""
        return self.root / UNET_RECORD

    @property
    def unet_dir(self) -> pathlib.Path:
        """The folder of the run's own copy of ``unet.pretrained``."""
        return self.root / UNET_DIR

    def own_unet(self, name: str) -> pathlib.Path:
        """Where the run keeps its copy of the U-Net file or SavedModel folder ``name``."""
        return self.unet_dir / pathlib.PurePath(name).name

    @property
    def machine_record(self) -> pathlib.Path:
        return self.root / MACHINE_RECORD

    @property
    def lock_path(self) -> pathlib.Path:
        """Beside the run folder, so a refused run leaves the run folder untouched."""
        return run_lock_path(self.root)

    def stage(self, n: int) -> pathlib.Path:
        if n not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {n!r}")
        return self.root / f"stage{n}"

    @property
    def genotypes(self) -> pathlib.Path:
        return self.stage(2) / GENOTYPES

    def genotype(self, epoch: int) -> pathlib.Path:
        return self.genotypes / f"epoch_{epoch:03d}.json"

    @property
    def search_time(self) -> pathlib.Path:
        return self.stage(2) / SEARCH_TIME

    @property
    def unet_score(self) -> pathlib.Path:
        """A given U-Net's val_dt score, written before Stage II searches on it (or before Stage
        III when a given genotype skips the search)."""
        return self.root / UNET_SCORE

    def sweep(self, epoch: int) -> pathlib.Path:
        """Stage III's folder of the genotype of search epoch ``epoch`` (a sweep)."""
        return self.stage(3) / f"epoch_{epoch:03d}"

    @property
    def compare_root(self) -> pathlib.Path:
        return self.root / "compare"

    def compare(self, method: str) -> pathlib.Path:
        return self.compare_root / method

    def unit_record(self, folder: pathlib.Path) -> pathlib.Path:
        """What the trained model in ``folder`` depends on (``--restart`` reads it)."""
        return pathlib.Path(folder) / UNIT_RECORD

    @property
    def evaluation(self) -> pathlib.Path:
        return self.root / "evaluation"

    @property
    def dice_csv(self) -> pathlib.Path:
        return self.root / DICE_CSV

    @property
    def test_evaluation(self) -> pathlib.Path:
        """The scores of the ``test_dt`` volumes (absent without a test split)."""
        return self.evaluation / TEST_SPLIT

    @property
    def test_dice_csv(self) -> pathlib.Path:
        return self.test_evaluation / "dice_per_case.csv"

    def best_model(self, folder: pathlib.Path) -> pathlib.Path:
        return folder / BEST_MODEL

    def stage3_dirs(self) -> dict[str, pathlib.Path]:
        """Stage III folders present: ``{"iac": stage3}`` and/or ``{"epoch_025": ...}``."""
        out = {}
        s3 = self.stage(3)
        if (s3 / HISTORY).exists():
            out["iac"] = s3
        for d in sorted(s3.glob("epoch_*")):
            if d.is_dir():
                out[d.name] = d
        return out

    def genotype_files(self) -> list[pathlib.Path]:
        return sorted(self.genotypes.glob("epoch_*.json"))

    # ------------------------------------------------------------------ ownership
    def is_run(self) -> bool:
        return is_run_folder(self.root)

    def check_ours(self) -> None:
        """Raise :class:`~iac_tf.files.RefusedPath` unless the run folder is new, empty or a
        run folder of this tool: a user's own folder is never written into."""
        if self.root.exists() and not self.root.is_dir():
            raise RefusedPath(f"{self.root}: is a file, not a run folder; set output_dir or name")
        if looks_like_old_run(self.root):
            raise RefusedPath(f"{self.root}: holds config.yaml beside version.txt or models.json "
                              f"like a run folder, but no {RUN_MARKER} file, so it is not known "
                              "to be a run of this tool; nothing was written. If it is a run "
                              f"folder this tool wrote (before the marker existed), adopt it with "
                              f"`{adopt_hint(self.root)}` and rerun; else choose another name or "
                              "output_dir")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.is_run():
            raise RefusedPath(f"{self.root}: exists, is not empty and is not a run folder of this "
                              f"tool (no {RUN_MARKER} file); nothing was written. Choose another "
                              "name or output_dir")

    def claim(self) -> None:
        """Create the run folder (if needed) and mark it as the tool's."""
        self.root.mkdir(parents=True, exist_ok=True)
        mark(self.root, RUN_MARKER, "an iac_tf run folder")
        attach(self.lock_path, self.root / RUN_MARKER, f"run folder {self.root}")

    def adopt(self) -> list[pathlib.Path]:
        """``iac adopt RUN_DIR``: make an old-style run folder (``config.yaml`` beside
        ``version.txt`` or ``models.json``, written before the marker) a run of this tool: its
        files are listed as the tool's and the folder is marked. Returns the files listed."""
        if is_run_folder(self.root):
            raise UserError(f"{self.root}: is a run folder of this tool already ({RUN_MARKER}); "
                            "nothing to adopt")
        if not looks_like_old_run(self.root):
            raise RefusedPath(f"{self.root}: does not look like a run folder (no config.yaml "
                              "beside version.txt or models.json); nothing was changed")
        with folder_lock(self.lock_path, f"run folder {self.root}"):
            return adopt_folder(self.root, RUN_MARKER, "an iac_tf run folder")

    @contextlib.contextmanager
    def lock(self) -> Iterator[pathlib.Path]:
        """Hold the run's lock (:func:`iac_tf.locks.folder_lock`, and the run's marker:
        :func:`iac_tf.locks.attach`): one writer per run."""
        with folder_lock(self.lock_path, f"run folder {self.root}") as path:
            attach(path, self.root / RUN_MARKER, f"run folder {self.root}")
            yield path

    def lock_holder(self) -> str | None:
        """Who writes this run right now, or ``None``."""
        return read_holder(self.lock_path)

    # ------------------------------------------------------------------ finished rules
    def check_readable(self) -> None:
        """Raise :class:`UnreadableRecord` (naming the file) if a record the finished rules
        read is there but cut off or damaged: checked before any work, not when the stage is
        reached."""
        folders = [self.stage(1), self.stage(3), *self.stage3_dirs().values()]
        if self.compare_root.is_dir():
            folders += sorted(d for d in self.compare_root.iterdir() if d.is_dir())
        for folder in folders:
            if (folder / SUMMARY).is_file():
                training_done(folder, 0)
        if self.search_time.is_file():
            read_record(self.search_time)

    def search_done(self, epochs: int) -> bool:
        """Stage II searched ``epochs`` epochs (its ``search_time.json`` says so)."""
        if not self.search_time.is_file():
            return False
        record = read_record(self.search_time)
        return record.get("epochs", 0) >= epochs or bool(record.get("stopped_early"))

    def status(self, cfg: dict | None = None) -> RunStatus:
        """What the run still lacks, judged against ``cfg`` (a plain config mapping; default:
        the run's own ``config.yaml``; absent keys take the config classes' defaults)."""
        if not self.root.is_dir():
            return RunStatus(self.root, ["run folder"], exists=False)
        cfg = with_stage_defaults(cfg if cfg is not None else read_config(self.config))
        missing = []
        if not self.config.exists():
            missing.append("config.yaml")
        s2, s3 = cfg["stage2"], cfg["stage3"]
        if not (cfg.get("unet") or {}).get("pretrained") and not (self.stage(1) / SUMMARY).exists():
            missing.append("stage1")
        method = str(cfg.get("method") or "iac")  # a comparison-only run has no IAC
        methods = list(dict.fromkeys(([method] if method != "iac" else [])
                                     + [str(m) for m in (cfg.get("compare") or [])]))
        last = self.genotype(int(s2["epochs"]))  # or the last one of a search that stopped early
        searched = self.search_time.exists() and (
            last.exists() or (self.search_done(int(s2["epochs"])) and bool(self.genotype_files())))
        if method == "iac" and not s3.get("genotype") and not searched:
            missing.append("stage2")  # not needed when stage3.genotype names a genotype file
        for ep in (s3.get("genotype_epochs") or []) if method == "iac" else []:
            if not (self.sweep(int(ep)) / SUMMARY).exists():
                missing.append(f"stage3/epoch_{int(ep):03d}")
        if method == "iac" and not s3.get("genotype_epochs") and not (self.stage(3) / SUMMARY).exists():
            missing.append("stage3")
        for m in methods:
            if not (self.compare(m) / SUMMARY).exists():
                missing.append(f"compare/{m}")
        columns = csv_columns(self.dice_csv)
        if columns is None:
            missing.append("evaluation")
        else:
            wanted = ["unet"] + (["iac"] if method == "iac" else []) + methods
            missing += [f"evaluation column {c}" for c in wanted if c not in columns]
        return RunStatus(self.root, missing, exists=True)

    # ------------------------------------------------------------------ models.json
    def model_paths(self) -> dict[str, pathlib.Path]:
        """Every registered model, as absolute paths (empty if none is registered)."""
        path = self.models_index
        if not path.exists():
            return {}
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: unreadable model index ({exc})") from None
        if not isinstance(entries, dict):
            raise UserError(f"{path}: expected a JSON object of name -> model path")
        return {name: (self.root / rel if not pathlib.Path(rel).is_absolute() else pathlib.Path(rel))
                for name, rel in entries.items()}

    def register_model(self, name: str, model_path: str | os.PathLike) -> None:
        """Record ``name -> model_path`` in ``models.json`` (atomic rewrite)."""
        model_path = pathlib.Path(model_path)
        try:
            rel = str(model_path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            rel = str(model_path.resolve())
        current = {k: str(v) for k, v in self._raw_index().items()}
        current[name] = rel
        atomic_write_json(self.models_index, current)

    def unregister_inside(self, folders) -> None:
        """Drop the ``models.json`` entries whose model lies in one of ``folders``."""
        entries = self._raw_index()
        cleared = [pathlib.Path(p).resolve() for p in folders]
        kept = {name: rel for name, rel in entries.items()
                if not any(_inside((self.root / rel).resolve(), d) for d in cleared)}
        if kept != entries:
            atomic_write_json(self.models_index, kept)

    def _raw_index(self) -> dict:
        if not self.models_index.exists():
            return {}
        return json.loads(self.models_index.read_text())

    # ------------------------------------------------------------------ U-Net record
    def read_unet_record(self) -> dict | None:
        """The record of the run's own U-Net copy, or ``None`` (no ``unet.pretrained``, or a run
        made before the run kept a copy)."""
        if not self.unet_record.is_file():
            return None
        try:
            record = json.loads(self.unet_record.read_text())
        except ValueError as exc:
            raise UserError(f"{self.unet_record}: unreadable U-Net record ({exc})") from None
        if not isinstance(record, dict) or not {"file", "sha256"} <= set(record):
            raise UserError(f"{self.unet_record}: expected a JSON object with 'file' and "
                            "'sha256'")
        return record

    def write_unet_record(self, record: dict) -> None:
        atomic_write_json(self.unet_record, record)

    # ------------------------------------------------------------------ dataset record
    def read_data_record(self) -> dict | None:
        if not self.data_record.is_file():
            return None
        try:
            return json.loads(self.data_record.read_text())
        except ValueError as exc:
            raise UserError(f"{self.data_record}: unreadable dataset record ({exc})") from None

    def check_data(self, record: dict, legacy_match=None) -> bool:
        """Compare the dataset ``record`` (:func:`iac_tf.data.fingerprint.data_record`) with
        the run's. Returns ``True`` when the run's record is to be written now: it has none
        yet, or one of the first fingerprint scheme that ``legacy_match(old record)`` accepts.
        Raises :class:`DatasetMismatch` naming both datasets and the files that differ (the
        same contents under another path are accepted)."""
        old = self.read_data_record()
        if old is None:
            return True
        if old.get("scheme") != SCHEME:  # a record of the first scheme (paths and sizes)
            if legacy_match is not None and legacy_match(old):
                return True
            diff = "other files (paths or sizes)"
        else:
            diff = differences(old, record)
            if not diff:
                return False
        where = f"{old.get('root')} ({old.get('files')} files)"
        now = f"{record.get('root')} ({record.get('files')} files)"
        if old.get("root") == record.get("root"):
            raise DatasetMismatch(
                f"{self.root} was made on the dataset {where}, whose files changed since: "
                f"{diff}. Nothing was changed. Restore those files, or start a new run on the "
                "dataset as it is now (--set name=...)")
        raise DatasetMismatch(
            f"{self.root} was made on the dataset {where}, but data.root now names {now}, "
            f"whose files differ: {diff}. Nothing was changed. Point data.root at the run's "
            "dataset (an absolute path), or start a new run (--set name=...)")

    def check_unet_train_cases(self, record: dict) -> None:
        """The given U-Net's training cases of the dataset ``record`` are those the run's splits
        were drawn with (none in both, or the same ids). Raises :class:`DatasetMismatch` naming
        both: other cases give another val_dt, val_search_dt and test_dt."""
        old = self.read_data_record()
        if old is None:
            return
        before, now = old.get("unet_train_cases"), record.get("unet_train_cases")
        if (before or {}).get("sha256") == (now or {}).get("sha256"):
            return

        def named(entry):
            return ("none given" if not entry else f"{entry.get('count')} case(s) from "
                    f"{entry.get('source')} (sha256 {str(entry.get('sha256'))[:12]})")
        raise DatasetMismatch(
            f"{self.root}: its splits were drawn with the U-Net's training cases "
            f"{named(before)}, the config now gives {named(now)}: another val_dt, val_search_dt "
            f"and {TEST_SPLIT}. Nothing was changed. Give the run's list again, or start a new "
            f"run (--set name=...)")

    def write_data_record(self, record: dict) -> None:
        atomic_write_json(self.data_record, record)

    # ------------------------------------------------------------------ machine record
    def read_machines(self) -> dict[str, list[dict]]:
        """``machine.json``: part (``stage1``, ``stage2``, ``stage3``, ``compare``) -> the
        machines it ran on, in order (``{}`` if the run has none)."""
        if not self.machine_record.is_file():
            return {}
        try:
            data = json.loads(self.machine_record.read_text())
        except ValueError as exc:
            raise UserError(f"{self.machine_record}: unreadable machine record ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"{self.machine_record}: expected a JSON object of part -> machines")
        return data

    def add_machine(self, part: str, record: dict, same=lambda a, b: a == b) -> None:
        """Record that ``part`` (re)starts on the machine ``record`` (:func:`iac_tf.machine.describe`):
        appended to the part's list unless ``same`` as one already there (a part resumed on
        another kind of machine lists both). Atomic rewrite of ``machine.json``."""
        machines = self.read_machines()
        seen = machines.get(part) if isinstance(machines.get(part), list) else []
        if not any(isinstance(m, dict) and same(m, record) for m in seen):
            machines[part] = [*seen, record]
            atomic_write_json(self.machine_record, machines)


def training_done(folder: pathlib.Path, epochs: int) -> dict | None:
    """A finished training (Stage I/III, a sweep epoch, a comparison) in ``folder``: its
    ``summary.json`` exists and ``history.csv`` has ``epochs`` trained epochs (or the summary
    says it stopped early). Returns ``{"summary": ..., "history": rows}``, else ``None``."""
    summary_path = folder / SUMMARY
    if not summary_path.is_file():
        return None
    rows = read_history(folder / HISTORY)
    summary = read_record(summary_path)
    try:
        trained = sum(1 for r in rows if int(r["epoch"]) > 0)  # epoch 0 is no training
    except (KeyError, TypeError, ValueError):
        raise UnreadableRecord(f"{folder / HISTORY}: damaged (a row without an epoch number); "
                               f"it is left untouched. {_DAMAGED_HINT}") from None
    if trained < epochs and not summary.get("stopped_early"):
        return None
    return {"summary": summary, "history": rows}


class UnreadableRecord(UserError):
    """A record of a run (``summary.json``, ``search_time.json``, ``history.csv``) is there
    but cut off or damaged: the run cannot tell whether that part is finished."""


_DAMAGED_HINT = ("The run cannot tell whether that part finished: restore the file, or clear "
                 "the stage with --restart stageN and run it again")


def read_record(path: pathlib.Path) -> dict:
    """A JSON object record of the run; :class:`UnreadableRecord` naming the file if it is cut
    off, not JSON or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableRecord(f"{path}: cut off or not JSON ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())}); it is left untouched. "
                               f"{_DAMAGED_HINT}") from None
    if not isinstance(data, dict):
        raise UnreadableRecord(f"{path}: not a JSON object; it is left untouched. "
                               f"{_DAMAGED_HINT}")
    return data


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    return path == folder or folder in path.parents


# ---------------------------------------------------------------------------- readers
def read_config(path: pathlib.Path) -> dict:
    """A run's ``config.yaml`` as a plain mapping (``{}`` if absent or unreadable)."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def with_stage_defaults(cfg: dict) -> dict:
    """``cfg`` with the ``stage1``-``stage3`` sections completed by the config classes'
    defaults (one source of defaults for every "finished" rule)."""
    out = dict(cfg)
    for key, cls in (("stage1", Stage1Config), ("stage2", Stage2Config), ("stage3", Stage3Config)):
        section = out.get(key) if isinstance(out.get(key), dict) else {}
        out[key] = {**to_dict(cls()), **section}
    return out


def read_history(path: pathlib.Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UnreadableRecord(f"{path}: damaged ({type(exc).__name__}: {exc}); it is left "
                               f"untouched. {_DAMAGED_HINT}") from None


def csv_columns(path: pathlib.Path) -> list[str] | None:
    if not path.exists():
        return None
    with path.open(newline="") as fh:
        return next(csv.reader(fh), [])


# ---------------------------------------------------------------------------- module API
def model_paths(run_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Every registered model of a run (:meth:`RunLayout.model_paths`)."""
    return RunLayout(run_dir).model_paths()


def register_model(run_dir: str | os.PathLike, name: str, model_path: str | os.PathLike) -> None:
    """Record ``name -> model_path`` in the run's ``models.json`` (:meth:`RunLayout.register_model`),
    holding the run's lock (only its holder writes into a run folder)."""
    layout = RunLayout(run_dir)
    with layout.lock():
        layout.register_model(name, model_path)


def run_status(run_dir: str | os.PathLike, cfg: dict | None = None) -> RunStatus:
    """:meth:`RunLayout.status`."""
    return RunLayout(run_dir).status(cfg)
