"""Run records: the resolved config each stage ran with (``stageN/config.yaml``), the check
that a rerun's config matches them, and ``--restart``.

Before a stage touches its folder, :func:`check_stages` compares the new config with those
records: the same config resumes (or skips a finished stage); a different one stops with
:class:`RunConflict` naming the differing keys, leaving every file untouched. Which keys matter
to which stage: :func:`stage_keys`; ``--restart stageN`` (:func:`restart_from`) clears a stage and
all later ones.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import yaml

from iac_tf.config import ConfigError, dump_yaml, from_dict, to_dict
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.config.stages import TrainingSettings
from iac_tf.files import atomic_write_text, check_removable, remove
from iac_tf.machine import describe, kind
from iac_tf.run_layout import CONFIG, VERSION, RunLayout
from iac_tf.version import code_version


STAGES = (1, 2, 3)
STAGE_NAMES = {1: "Stage I", 2: "Stage II", 3: "Stage III"}

#: Keys that never block a rerun: they change how a stage reports, where files go or where it
#: runs, not what it computes (``*`` matches any section). ``data.root`` is where the data is:
#: whether it is the run's data is the dataset record's to say (by content,
#: :mod:`iac_tf.data.fingerprint`), so a copy elsewhere is the same data. Our choice, see
#: docs/decisions.md.
NON_BLOCKING = ("data.cache_dir", "*.verbose", "*.checkpoints_to_keep", "stage2.draw_genotypes",
                "stage3.export_savedmodel", "unet.expected_dice", "data.root", "*.distribute")


#: Keys outside a stage's sections that decide its results: ``evaluation.metric`` defines the
#: Dice that selects the best epoch of Stages I and III (and of the comparisons).
SELECTION_KEYS = {1: ("evaluation.metric",), 3: ("evaluation.metric",)}

#: ``unet`` keys that only tell Stage I how to build its U-Net: with ``unet.pretrained`` set they
#: decide nothing (and the recorded configs name the user's U-Net in ``unet.backbone``).
BUILD_ONLY = ("unet.backbone", "unet.encoder_weights", "unet.decoder_filters", "unet.options")


class RunConflict(ConfigError):
    """A stage folder holds results of another config (the message names the differing keys)."""


def stage_sections(cfg: ExperimentConfig, stage: int) -> tuple[str, ...]:
    """The config sections a stage's results depend on: Stage I on ``seed``, ``data``, ``unet``
    and ``stage1``; Stage II also on ``stage2`` (not on ``stage1`` when ``unet.pretrained`` is
    set); Stage III also on ``stage3`` (not on ``stage2`` when ``stage3.genotype`` is set).
    ``name``, ``output_dir``, ``deterministic`` and ``evaluation`` never matter to a stage,
    except ``evaluation.metric`` (:data:`SELECTION_KEYS`)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    sections = ["seed", "data", "unet"]
    if stage == 1 or not cfg.unet.pretrained:
        sections.append("stage1")
    if stage >= 2 and not (stage == 3 and cfg.stage3.genotype):
        sections.append("stage2")
    if stage == 3:
        sections.append("stage3")
    return tuple(sections)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(data) if isinstance(data, tuple) else data}


def _blocking(key: str) -> bool:
    section, _, rest = key.partition(".")
    return key not in NON_BLOCKING and f"*.{rest}" not in NON_BLOCKING


def stage_keys(cfg_data: dict, sections) -> dict[str, Any]:
    """The dotted keys (``unet.options.base_filters``) of ``sections`` in a plain config mapping
    that decide a stage's results, with their values."""
    flat = _flatten({k: cfg_data[k] for k in sections if k in cfg_data})
    unet = cfg_data.get("unet") if isinstance(cfg_data.get("unet"), dict) else {}
    ignored = BUILD_ONLY if unet.get("pretrained") else ()
    return {k: v for k, v in flat.items() if _blocking(k)
            and not any(k == b or k.startswith(b + ".") for b in ignored)}


def as_recorded(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as the run records it: with ``unet.pretrained``, ``unet.backbone`` is the label of
    the run's own copy of that U-Net (``custom: my_unet.keras, 3f2a1b4c``, see
    :mod:`iac_tf.run_unet`) instead of the unused zoo backbone."""
    record = RunLayout.of(cfg).read_unet_record() if cfg.unet.pretrained else None
    if not record or not record.get("label"):
        return cfg
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, backbone=record["label"]))


def _recorded(path: pathlib.Path) -> dict:
    """A stage record as a plain mapping, with defaults filled in for keys it predates."""
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return to_dict(from_dict(ExperimentConfig, raw))
    except ConfigError:
        return raw


def stage_differences(cfg: ExperimentConfig, stage: int) -> dict[str, tuple[Any, Any]] | None:
    """``None`` if the stage folder holds no results; else ``{key: (recorded, now)}`` of the
    keys that differ from the stage's record (empty: same config). A folder with files but no
    record is reported as ``{"(no record)": ...}``."""
    folder = RunLayout.of(cfg).stage(stage)
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    record = RunLayout.record(folder)
    if not record.is_file():
        return {f"(no {CONFIG})": ("unknown", "this config")}
    sections = stage_sections(cfg, stage)
    recorded, now = _recorded(record), to_dict(cfg)
    old = stage_keys(recorded, sections)
    new = stage_keys(now, sections)
    for key in SELECTION_KEYS.get(stage, ()):
        old[key], new[key] = _dotted(recorded, key), _dotted(now, key)
    missing = "(not set)"
    return {k: (old.get(k, missing), new.get(k, missing))
            for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)}


def _dotted(data: dict, key: str) -> Any:
    """The value of a dotted key (``"(not set)"`` if absent)."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return "(not set)"
        data = data[part]
    return data


def check_stages(cfg: ExperimentConfig, stages) -> None:
    """Raise :class:`RunConflict` for the first of ``stages`` whose folder holds results of a
    different config (nothing is written or deleted)."""
    for stage in sorted(stages):
        diff = stage_differences(cfg, stage)
        if not diff:
            continue
        folder = RunLayout.of(cfg).stage(stage)
        lines = [f"{folder} holds {STAGE_NAMES[stage]} results of another config "
                 f"({RunLayout.record(folder)}); these keys differ (recorded -> now):"]
        lines += [f"  {key}: {show_value(a)} -> {show_value(b)}" for key, (a, b) in diff.items()]
        removed, kept = restart_plan(cfg, stage)
        lines.append(
            f"Nothing was changed. Either start a new run: --set name={cfg.name}_2 (any new name), "
            f"or clear {STAGE_NAMES[stage]} and every later stage of {cfg.run_dir} and rerun: "
            f"--restart stage{stage} (removes {_names(cfg, removed)}"
            + (f"; keeps {_names(cfg, kept)}" if kept else "") + ")"
        )
        raise RunConflict("\n".join(lines))


def _names(cfg: ExperimentConfig, paths) -> str:
    return ", ".join(str(p.relative_to(cfg.run_dir)) + "/" for p in paths) or "nothing"


def show_value(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith("(") else yaml.safe_dump(
        value, default_flow_style=True).strip().removesuffix("...").strip()


def record_stage(cfg: ExperimentConfig, stage: int) -> pathlib.Path:
    """Write ``stageN/config.yaml`` (the resolved config the stage runs with) and
    ``stageN/version.txt``, and record the machine in the run's ``machine.json``."""
    folder = RunLayout.of(cfg).stage(stage)
    dump_yaml(as_recorded(cfg), RunLayout.record(folder))
    atomic_write_text(folder / VERSION, code_version() + "\n")
    record_machine(cfg, RunLayout.stage_name(stage))
    return RunLayout.record(folder)


def record_machine(cfg: ExperimentConfig, part: str) -> None:
    """Add this machine (:func:`iac_tf.machine.describe`, TensorFlow asked) to the run's
    ``machine.json`` for ``part``, unless the part already lists a machine of the same kind."""
    RunLayout.of(cfg).add_machine(part, describe(tensorflow=True), same=lambda a, b: kind(a) == kind(b))


def unit_record(settings: Any, depends_on: tuple[int, ...]) -> dict:
    """What a trained model of ``compare/`` depends on: the stages whose results it reads and
    the training keys of its settings (``settings``: a ``TrainingSettings``) that decide
    its result. Written beside it (:meth:`RunLayout.unit_record`) and read by ``--restart``."""
    fields = [f.name for f in dataclasses.fields(TrainingSettings)]
    data = to_dict(settings)
    return {"depends_on_stages": sorted(int(s) for s in depends_on),
            "training": {k: data[k] for k in fields if k in data and _blocking(f"stage3.{k}")}}


def _still_valid(cfg: ExperimentConfig, folder: pathlib.Path, stage: int) -> bool:
    """Whether ``compare/<folder>`` survives ``--restart stage<stage>``: it reads no result of
    that stage or a later one, and its training keys equal this config's Stage III keys."""
    record_path = RunLayout.of(cfg).unit_record(folder)
    try:
        record = yaml.safe_load(record_path.read_text()) or {}
        depends = [int(s) for s in record["depends_on_stages"]]
        training = record["training"]
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return False  # no (readable) record: it may depend on anything
    return (all(s < stage for s in depends)
            and training == unit_record(cfg.stage3, ())["training"])


def restart_plan(cfg: ExperimentConfig, stage: int) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """``--restart stageN``: ``(removed, kept)``. Removed: the folders of stage ``N`` and every
    later stage, the evaluation, and each model of ``compare/`` that depends on them (reads
    their results, or trains with Stage III's settings that now differ, or has no record of
    what it depends on). Kept: the models of ``compare/`` that depend on earlier stages only
    (e.g. ``unet_continued`` and the comparison methods read Stage I's U-Net and Stage III's
    training keys: a Stage III restart with the same training keys keeps them)."""
    if stage not in STAGES:
        raise ConfigError(f"--restart: expected stage1, stage2 or stage3, got stage{stage}")
    layout = RunLayout.of(cfg)
    removed = [layout.stage(s) for s in STAGES if s >= stage]
    kept = []
    root = layout.compare_root
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        (kept if folder.is_dir() and _still_valid(cfg, folder, stage) else removed).append(folder)
    removed.append(layout.evaluation)
    return [p for p in removed if p.exists()], kept


def restart_from(cfg: ExperimentConfig, stage: int,
                 removed: list[pathlib.Path] | None = None) -> list[pathlib.Path]:
    """``--restart stageN``: delete what :func:`restart_plan` removes (``removed``: what the run
    plan took from it, :mod:`iac_tf.pipeline.plan`) and their entries in ``models.json``;
    return what was deleted. Callers check everything first (:func:`iac_tf.pipeline` deletes
    only after the config, the data and the U-Net passed)."""
    layout = RunLayout.of(cfg)
    gone = list(removed) if removed is not None else restart_plan(cfg, stage)[0]
    check_removable(gone, "a result of this run", f"Nothing was deleted; move it out of "
                    f"{layout.root}, then rerun with --restart stage{stage}")
    for path in gone:
        remove(path)
    layout.unregister_inside(gone)
    return gone


def write_resolved(cfg: ExperimentConfig) -> pathlib.Path:
    """Mark the run folder as the tool's and write ``config.yaml`` (resolved) and
    ``version.txt`` into it."""
    layout = RunLayout.of(cfg)
    layout.claim()
    dump_yaml(as_recorded(cfg), layout.config)
    atomic_write_text(layout.version, code_version() + "\n")
    return cfg.run_dir
