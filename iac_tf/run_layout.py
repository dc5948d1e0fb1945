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
from typing import Any, Iterator, NamedTuple

import yaml

from iac_tf.config import to_dict
from iac_tf.config.stages import Stage1Config, Stage2Config, Stage3Config
from iac_tf.config.data import TEST_SPLIT
from iac_tf.config.experiment import EvaluationConfig, ExperimentConfig, comparison_methods
from iac_tf.data.fingerprint import SCHEME, differences
from iac_tf.errors import UserError
from iac_tf.files import (RUN_MARKER, RefusedPath, adopt_folder, adopt_hint, atomic_write_json,
                          is_marked, is_run_folder, mark, run_lock_path)
from iac_tf.locks import attach, folder_lock, read_holder

CONFIG = "config.yaml"  # the run's resolved config; in a stage or compare/ folder: its record
VERSION = "version.txt"
LOG = "log.txt"
MODELS_INDEX = "models.json"
DATA_RECORD = "data_record.json"
UNET_RECORD = "unet_record.json"  # the run's copy of unet.pretrained (iac_tf.run_unet)
UNET_DIR = "unet"
MACHINE_RECORD = "machine.json"
GRID_RECORD = "grid.json"  # written by `iac grid` into each run folder: dataset, backbone, device
BEST_MODEL = "best_model.keras"
SUMMARY = "summary.json"
HISTORY = "history.csv"
CHECKPOINTS = "checkpoints"  # TensorFlow's checkpoints of a training folder (resuming)
TENSORBOARD = "tensorboard"
LEARNING_CURVES = "learning_curves.png"
SEARCH_TIME = "search_time.json"
UNET_SCORE = "unet_score.json"  # the given U-Net scored on val_dt before it is improved
GENOTYPES = "genotypes"  # Stage II: genotypes/epoch_XXX.json (and .png)
ARCH = "arch"  # Stage II: arch/epoch_XXX.json (alpha, beta)
SAVEDMODEL = "savedmodel"  # Stage III: the exported SavedModel
SELECTED_GENOTYPE = "selected_genotype.json"  # Stage III of a sweep: the epoch chosen
GENOTYPE_EPOCHS_PLOT = "genotype_epochs.png"  # Stage III of a sweep: Fig. 6
UNIT_RECORD = "unit.yaml"  # compare/<model>/: the stages and training keys it depends on
COMPARE = "compare"
EVALUATION = "evaluation"
# the files of an evaluation folder (evaluation/, evaluation/test_dt/); `iac evaluate-folder`
# writes the two volumetric ones into its output folder, in the same schema
DICE_PER_CASE = "dice_per_case.csv"
STATS = "stats.json"
DICE_TABLE = "dice_table.md"
DICE_PAIRED_PLOT = "dice_paired.png"
DICE_METHODS_PLOT = "dice_methods.png"
VOLUMETRIC_CSV = "volumetric_per_case.csv"
VOLUMETRIC_SUMMARY = "volumetric_summary.json"
DICE_CSV = pathlib.Path(EVALUATION) / DICE_PER_CASE
#: An unmarked folder holding CONFIG beside one of these looks like a run written before the
#: run marker existed (recognised, never written: ``iac adopt`` marks it).
OLD_RUN_FILES = (VERSION, MODELS_INDEX)


EPOCH_PREFIX = "epoch_"  # epoch_025: Stage II's genotype and arch files, a sweep's folder
EPOCH_GLOB = EPOCH_PREFIX + "*"


def epoch_name(epoch: int) -> str:
    """``epoch_025``: a search epoch's genotype and arch files, a sweep's Stage III folder."""
    return f"{EPOCH_PREFIX}{int(epoch):03d}"


def epoch_number(name: str) -> int | None:
    """The epoch of an :func:`epoch_name` (``epoch_025`` -> 25; a file's stem), else ``None``."""
    digits = name[len(EPOCH_PREFIX):] if name.startswith(EPOCH_PREFIX) else ""
    return int(digits) if digits.isdigit() else None


def sweep_model(epoch: int) -> str:
    """``iac_epoch_025``: the name in ``models.json`` of the IAC U-Net a genotype-epoch sweep
    trains from Stage II's genotype of ``epoch``."""
    return f"iac_{epoch_name(epoch)}"


def sweep_epoch(name: str) -> int | None:
    """The epoch of a :func:`sweep_model` name (``iac_epoch_025`` -> 25), else ``None``."""
    return epoch_number(name.removeprefix("iac_")) if name.startswith("iac_") else None


def implant_model(mode: str) -> str:
    """``iac_residual``: the name in ``models.json`` of the IAC U-Net Stage III trains with the
    extra implant mode ``mode`` (``stage3.extra_implant_modes``)."""
    return f"iac_{mode}"


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


class Stage3Model(NamedTuple):
    """A model Stage III trains (:meth:`RunLayout.stage3_models`): its name in ``models.json``,
    its folder, and whether it is an IAC U-Net (trained from a genotype, exported with
    ``stage3.export_savedmodel``; the budget-matched ``unet_continued`` is not)."""

    name: str
    folder: pathlib.Path
    iac: bool = True


@dataclasses.dataclass(frozen=True)
class Part:
    """One part a run trains (:meth:`RunLayout.parts`).

    Attributes:
        name: as :meth:`RunLayout.status` names it when missing (``stage1``,
            ``stage3/epoch_025``, ``compare/nested``).
        model: its name in ``models.json`` (``None`` for Stage II, which trains no model).
        folder: where it trains.
        epochs: the epochs it trains (Stage II: search epochs).
        kind: ``stage1``, ``stage2`` (the search: finished by :meth:`RunLayout.search_done`),
            ``stage3`` (the IAC U-Nets: a sweep's epochs, the extra implant modes) or
            ``compare`` (``unet_continued`` and the comparison methods).
        needs_export: finished only once its SavedModel is exported (Stage III).
    """

    name: str
    model: str | None
    folder: pathlib.Path
    epochs: int
    kind: str
    needs_export: bool = False


class RunLayout:
    """The paths and rules of one run folder ``root`` (nothing is read or written on creation)."""

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> RunLayout:
        """The run folder the experiment config ``cfg`` names (``output_dir/name``)."""
        return cls(cfg.run_dir)

    # ------------------------------------------------------------------ paths
    @property
    def config(self) -> pathlib.Path:
        return self.root / CONFIG

    @property
    def version(self) -> pathlib.Path:
        return self.root / VERSION

    @property
    def log(self) -> pathlib.Path:
        """Every console record of every command that wrote the run, with date and time."""
        return self.root / LOG

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
    def grid_record(self) -> pathlib.Path:
        """``iac grid``'s record of the setting (dataset, backbone, device)."""
        return self.root / GRID_RECORD

    @property
    def lock_path(self) -> pathlib.Path:
        """Beside the run folder, so a refused run leaves the run folder untouched."""
        return run_lock_path(self.root)

    def stage(self, n: int) -> pathlib.Path:
        if n not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {n!r}")
        return self.root / self.stage_name(n)

    @staticmethod
    def stage_name(n: int) -> str:
        """``stage1``: the folder of stage ``n`` (also how :meth:`status` names it)."""
        return f"stage{n}"

    @property
    def genotypes(self) -> pathlib.Path:
        return self.stage(2) / GENOTYPES

    def genotype(self, epoch: int) -> pathlib.Path:
        return self.genotypes / f"{epoch_name(epoch)}.json"

    @property
    def arch(self) -> pathlib.Path:
        """Stage II's ``arch/epoch_XXX.json`` (the architecture weights of each epoch)."""
        return self.stage(2) / ARCH

    def arch_files(self) -> list[pathlib.Path]:
        return sorted(self.arch.glob(f"{EPOCH_GLOB}.json"))

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
        return self.stage(3) / epoch_name(epoch)

    @property
    def selected_genotype(self) -> pathlib.Path:
        """With a sweep: which epoch's Stage III is the run's IAC U-Net, and why."""
        return self.stage(3) / SELECTED_GENOTYPE

    @property
    def genotype_epochs_plot(self) -> pathlib.Path:
        return self.stage(3) / GENOTYPE_EPOCHS_PLOT

    @property
    def compare_root(self) -> pathlib.Path:
        return self.root / COMPARE

    def compare(self, method: str) -> pathlib.Path:
        return self.compare_root / method

    def model_folder(self, name: str) -> pathlib.Path:
        """Where the stage that trains the model ``name`` (of ``models.json``) writes it:
        ``unet`` Stage I, ``iac`` Stage III, ``iac_epoch_XXX`` that epoch of a sweep, any other
        (``iac_<mode>``, ``unet_continued``, a comparison method) ``compare/<name>/``."""
        if name == "unet":
            return self.stage(1)
        if name == "iac":
            return self.stage(3)
        epoch = sweep_epoch(name)
        return self.sweep(epoch) if epoch is not None else self.compare(name)

    def stage3_models(self, genotype_epochs=(), extra_implant_modes=(), unet_continued=False
                      ) -> list[Stage3Model]:
        """The models Stage III trains, in order: ``iac`` in ``stage3/``, or with a
        genotype-epoch sweep one ``iac_epoch_XXX`` per epoch in ``stage3/epoch_XXX/``; then
        ``iac_<mode>`` per extra implant mode in ``compare/iac_<mode>/``; then
        (``unet_continued``) the budget-matched U-Net in ``compare/unet_continued/``, the one
        that is no IAC U-Net. The one list the run plan, Stage III and the run's status read."""
        out = ([Stage3Model(sweep_model(e), self.sweep(int(e))) for e in genotype_epochs]
               or [Stage3Model("iac", self.stage(3))])
        out += [Stage3Model(implant_model(mode), self.compare(implant_model(mode)))
                for mode in extra_implant_modes]
        if unet_continued:
            out.append(Stage3Model("unet_continued", self.compare("unet_continued"), iac=False))
        return out

    def unit_record(self, folder: pathlib.Path) -> pathlib.Path:
        """What the trained model in ``folder`` depends on (``--restart`` reads it)."""
        return pathlib.Path(folder) / UNIT_RECORD

    @property
    def evaluation(self) -> pathlib.Path:
        return self.root / EVALUATION

    def split_evaluation(self, split: str, main_split: str) -> pathlib.Path:
        """The evaluation folder of ``split``: ``evaluation/`` for the run's
        ``evaluation.split`` (``main_split``), else ``evaluation/<split>/``."""
        return self.evaluation if split == main_split else self.evaluation / split

    @property
    def dice_csv(self) -> pathlib.Path:
        return self.root / DICE_CSV

    @property
    def test_evaluation(self) -> pathlib.Path:
        """The scores of the ``test_dt`` volumes (absent without a test split)."""
        return self.evaluation / TEST_SPLIT

    @property
    def test_dice_csv(self) -> pathlib.Path:
        return self.test_evaluation / DICE_PER_CASE

    @property
    def stats(self) -> pathlib.Path:
        return self.evaluation / STATS

    def best_model(self, folder: pathlib.Path) -> pathlib.Path:
        return pathlib.Path(folder) / BEST_MODEL

    @staticmethod
    def history(folder: pathlib.Path) -> pathlib.Path:
        """The epoch log of a training folder (a stage, a sweep epoch, a comparison)."""
        return pathlib.Path(folder) / HISTORY

    @staticmethod
    def summary(folder: pathlib.Path) -> pathlib.Path:
        return pathlib.Path(folder) / SUMMARY

    @staticmethod
    def record(folder: pathlib.Path) -> pathlib.Path:
        """The resolved config a stage (or a comparison) ran with, in its folder."""
        return pathlib.Path(folder) / CONFIG

    def stage3_dirs(self) -> dict[str, pathlib.Path]:
        """Stage III folders present: ``{"iac": stage3}`` and/or ``{"epoch_025": ...}``."""
        out = {}
        s3 = self.stage(3)
        if (s3 / HISTORY).exists():
            out["iac"] = s3
        for d in sorted(s3.glob(EPOCH_GLOB)):
            if d.is_dir():
                out[d.name] = d
        return out

    def genotype_files(self) -> list[pathlib.Path]:
        return sorted(self.genotypes.glob(f"{EPOCH_GLOB}.json"))

    # ------------------------------------------------------------------ ownership
    def is_run(self) -> bool:
        """The one rule of "is this a run folder": a folder holding the run marker (only a
        marked folder is ever written as a run): :func:`iac_tf.files.is_run_folder`, which the
        writer gate asks too."""
        return is_run_folder(self.root)

    def looks_like_old_run(self) -> bool:
        """An unmarked folder holding ``config.yaml`` beside ``version.txt`` or ``models.json``:
        what runs written before the marker look like (or a user's folder that happens to)."""
        return (self.root.is_dir() and not self.is_run() and self.config.is_file()
                and any((self.root / name).exists() for name in OLD_RUN_FILES))

    def looks_like_run(self) -> bool:
        """A run folder or something that looks like one: never written over by other commands."""
        return self.is_run() or self.looks_like_old_run()

    def check_ours(self) -> None:
        """Raise :class:`~iac_tf.files.RefusedPath` unless the run folder is new, empty or a
        run folder of this tool: a user's own folder is never written into."""
        if self.root.exists() and not self.root.is_dir():
            raise RefusedPath(f"{self.root}: is a file, not a run folder; set output_dir or name")
        if self.looks_like_old_run():
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
        if self.is_run():
            raise UserError(f"{self.root}: is a run folder of this tool already ({RUN_MARKER}); "
                            "nothing to adopt")
        if not self.looks_like_old_run():
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
            if self.summary(folder).is_file():
                self.trained(folder, 0)
        if self.search_time.is_file():
            read_record(self.search_time)

    def trained(self, folder: pathlib.Path, epochs: int, needs_export: bool = False) -> dict | None:
        """The one "finished" rule of a training (Stage I/III, a sweep epoch, a comparison) in
        ``folder``: its ``summary.json`` exists, ``history.csv`` has ``epochs`` trained epochs
        (or the summary says it stopped early) and, with ``needs_export``, the SavedModel was
        exported. Returns ``{"summary": ..., "history": rows}``, else ``None``; a damaged record
        raises :class:`UnreadableRecord`."""
        folder = pathlib.Path(folder)
        summary_path = self.summary(folder)
        if not summary_path.is_file():
            return None
        rows = read_history(self.history(folder))
        summary = read_record(summary_path)
        try:
            trained = sum(1 for r in rows if int(r["epoch"]) > 0)  # epoch 0 is no training
        except (KeyError, TypeError, ValueError):
            raise UnreadableRecord(f"{self.history(folder)}: damaged (a row without an epoch "
                                   f"number); it is left untouched. {_DAMAGED_HINT}") from None
        if trained < epochs and not summary.get("stopped_early"):
            return None
        if needs_export and not (folder / SAVEDMODEL).is_dir():
            return None  # killed between the last epoch and the export
        return {"summary": summary, "history": rows}

    def search_done(self, epochs: int) -> bool:
        """Stage II searched ``epochs`` epochs (its ``search_time.json`` says so, or that it
        stopped early) and its genotypes are there."""
        if not self.search_time.is_file():
            return False
        record = read_record(self.search_time)
        searched = record.get("epochs", 0) >= epochs or bool(record.get("stopped_early"))
        return searched and bool(self.genotype_files())

    def parts(self, cfg: dict) -> list[Part]:
        """The parts a run of ``cfg`` (a plain config mapping; absent keys take the config
        classes' defaults) trains, in order: Stage I (unless ``unet.pretrained``), Stage II
        (with ``method: iac``, unless ``stage3.genotype`` names the genotype), Stage III (one,
        or one per ``stage3.genotype_epochs``), each ``stage3.extra_implant_modes``,
        ``unet_continued`` (``evaluation.unet_continued``), then each comparison method."""
        cfg = with_stage_defaults(cfg)
        s1, s2, s3 = cfg["stage1"], cfg["stage2"], cfg["stage3"]
        method = str(cfg.get("method") or "iac")  # a comparison-only run has no IAC
        out = []
        if not (cfg.get("unet") or {}).get("pretrained"):
            out.append(Part(self.stage_name(1), "unet", self.stage(1), int(s1["epochs"]), "stage1"))
        if method == "iac":
            if not s3.get("genotype"):
                out.append(Part(self.stage_name(2), None, self.stage(2), int(s2["epochs"]),
                                "stage2"))
            export = bool(s3.get("export_savedmodel"))
            models = self.stage3_models(s3.get("genotype_epochs") or (),
                                        s3.get("extra_implant_modes") or (),
                                        bool(cfg["evaluation"].get("unet_continued")))
            out += [Part(self.rel(m.folder), m.name, m.folder, int(s3["epochs"]),
                         "stage3" if m.iac else "compare", export and m.iac) for m in models]
        out += [Part(self.rel(self.compare(m)), m, self.compare(m), int(s3["epochs"]),
                     "compare") for m in recorded_comparisons(cfg)]
        return out

    def rel(self, path: pathlib.Path) -> str:
        """``path`` inside the run as the run names it (``stage3/epoch_025``, ``stage2/arch``)."""
        return pathlib.Path(path).relative_to(self.root).as_posix()

    @staticmethod
    def evaluated_models(cfg: dict) -> list[str]:
        """The model columns the run's ``dice_per_case.csv`` must have: ``unet`` (the reference
        every model is compared with), ``iac`` with ``method: iac``, and each comparison method
        (the evaluation also scores every other registered model)."""
        iac = ["iac"] if str(cfg.get("method") or "iac") == "iac" else []
        return list(dict.fromkeys(["unet", *iac, *recorded_comparisons(cfg)]))

    def part_done(self, part: Part) -> bool:
        """:meth:`search_done` for Stage II, :meth:`trained` for every other part."""
        if part.kind == "stage2":
            return self.search_done(part.epochs)
        return self.trained(part.folder, part.epochs, part.needs_export) is not None

    def status(self, cfg: dict | None = None) -> RunStatus:
        """What the run still lacks, judged against ``cfg`` (a plain config mapping; default:
        the run's own ``config.yaml``; absent keys take the config classes' defaults): every
        part of :meth:`parts` by :meth:`part_done`, then the evaluation and its model columns.
        A part whose record is damaged is missing."""
        if not self.root.is_dir():
            return RunStatus(self.root, ["run folder"], exists=False)
        cfg = cfg if cfg is not None else read_config(self.config)
        missing = []
        if not self.config.exists():
            missing.append(CONFIG)
        for part in self.parts(cfg):
            try:
                if not self.part_done(part):
                    missing.append(part.name)
            except UnreadableRecord:  # not finished; `iac report` names the file
                missing.append(part.name)
        columns = csv_columns(self.dice_csv)
        if columns is None:
            missing.append(EVALUATION)
        else:
            missing += [f"{EVALUATION} column {c}" for c in self.evaluated_models(cfg)
                        if c not in columns]
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


def training_done(folder: pathlib.Path, epochs: int, needs_export: bool = False) -> dict | None:
    """:meth:`RunLayout.trained` of ``folder`` (the one "finished" rule of a training)."""
    folder = pathlib.Path(folder)
    return RunLayout(folder.parent).trained(folder, epochs, needs_export)


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
    """``cfg`` with the ``stage1``-``stage3`` and ``evaluation`` sections completed by the config classes'
    defaults (one source of defaults for every "finished" rule)."""

    out = dict(cfg)
    for key, cls in (("stage1", Stage1Config), ("stage2", Stage2Config), ("stage3", Stage3Config),
                     ("evaluation", EvaluationConfig)):
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


def recorded_comparisons(cfg: dict) -> tuple[str, ...]:
    """:func:`~iac_tf.config.experiment.comparison_methods` of a run's recorded config (a plain
    mapping, :attr:`ExperimentConfig.comparisons` of a loaded one)."""
    return comparison_methods(str(cfg.get("method") or "iac"),
                              [str(m) for m in (cfg.get("compare") or [])])


def trained_unet(cfg: ExperimentConfig) -> pathlib.Path:
    """The U-Net that Stages II/III improve, as the config names it: ``unet.pretrained`` (the
    user's file), else Stage I's best model (which may not exist yet)."""
    if cfg.unet.pretrained:
        return pathlib.Path(cfg.unet.pretrained)
    layout = RunLayout.of(cfg)
    return layout.best_model(layout.stage(1))


# ---------------------------------------------------------------------------- runs among other folders
def runs_within(folder: str | os.PathLike, depth: int = 2) -> list[pathlib.Path]:
    """Folders that are or look like runs at ``folder`` or up to ``depth`` levels below it."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    found = [folder] if RunLayout(folder).looks_like_run() else []
    if depth > 0:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            children = []
        for child in children:
            found += runs_within(child, depth - 1)
    return found


def run_above(path: str | os.PathLike) -> pathlib.Path | None:
    """The run folder (or old-style one) ``path`` is in or is, else ``None``."""
    path = pathlib.Path(os.path.abspath(path))
    for folder in (path, *path.parents):
        if RunLayout(folder).looks_like_run():
            return folder
    return None


def check_outside_runs(path: str | os.PathLike, what: str, option: str,
                       holds: bool = True) -> None:
    """Raise :class:`RefusedPath` if ``path`` is, is inside, or (``holds``) holds a run folder:
    commands other than a run's own never write there."""
    run = run_above(path)
    if run is not None:
        where = ("is a run folder" if run == pathlib.Path(os.path.abspath(path))
                 else f"is inside the run folder {run}")
        raise RefusedPath(f"{path}: {where}; {what} is never written into a run. Nothing was "
                          f"changed. Choose {option} outside the run folders")
    runs = runs_within(path) if holds else []
    if runs:
        raise RefusedPath(f"{path}: holds the run folder {runs[0]}; {what} is never written "
                          f"over a run. Nothing was changed. Choose {option} outside the run "
                          "folders")


def check_replaceable_folder(folder: str | os.PathLike, marker: str, what: str,
                             option: str = "--out") -> None:
    """Raise :class:`RefusedPath` unless ``folder`` may be written as ``what``: it does not
    exist, is empty, or carries ``marker`` (the tool wrote it); and it is not, and holds no,
    run folder. (Which files in it may be replaced is the manifest's to say.)"""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RefusedPath(f"{folder}: is a file, not a folder for {what}; choose another {option}")
    runs = runs_within(folder)
    if runs:
        where = "is a run folder" if runs[0] == folder else f"holds the run folder {runs[0]}"
        raise RefusedPath(f"{folder}: {where}; {what} is never written over a run. Nothing was "
                          f"changed. Choose a new {option} folder outside the run folders")
    if folder.is_dir() and any(folder.iterdir()) and not is_marked(folder, marker):
        raise RefusedPath(f"{folder}: not empty and not {what} written by this tool (no "
                          f"{marker} file); nothing was changed. Choose a new or empty {option} "
                          "folder")


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
