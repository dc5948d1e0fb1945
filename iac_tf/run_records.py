"""Run records: the resolved config each stage ran with (``stageN/config.yaml``), the check
that a rerun's config matches them, and ``--restart``.

Before a stage touches its folder, :func:`check_stages` compares the new config with those
records: the same config resumes (or skips a finished stage); a different one stops with
:class:`RunConflict` naming the differing keys, leaving every file untouched. Which keys matter
to which stage: :func:`stage_keys`; ``--restart stageN`` (:func:`restart_from`) clears a stage and
all later ones.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from iac_tf.config import ConfigError, dump_yaml, from_dict, to_dict
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.files import atomic_write_text, check_removable, remove
from iac_tf.version import code_version


STAGES = (1, 2, 3)
STAGE_NAMES = {1: "Stage I", 2: "Stage II", 3: "Stage III"}
STAGE_RECORD = "config.yaml"

#: Keys that never block a rerun: they change how a stage reports, where files go or where it
#: runs, not what it computes (``*`` matches any section). ``data.root`` is where the data is:
#: whether it is the run's data is the dataset record's to say (by content,
#: :mod:`iac_tf.data.fingerprint`), so a copy elsewhere is the same data. Our choice, see
#: docs/decisions.md.
NON_BLOCKING = ("data.cache_dir", "*.verbose", "*.checkpoints_to_keep", "stage2.draw_genotypes",
                "stage3.export_savedmodel", "data.root", "*.distribute")


class RunConflict(ConfigError):
    """A stage folder holds results of another config (the message names the differing keys)."""


def stage_sections(cfg: ExperimentConfig, stage: int) -> tuple[str, ...]:
    """The config sections a stage's results depend on: Stage I on ``seed``, ``data``, ``unet``
    and ``stage1``; Stage II also on ``stage2`` (not on ``stage1`` when ``unet.pretrained`` is
    set); Stage III also on ``stage3`` (not on ``stage2`` when ``stage3.genotype`` is set).
    ``name``, ``output_dir``, ``deterministic`` and ``evaluation`` never matter to a stage."""
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
    return {k: v for k, v in flat.items() if _blocking(k)}


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
    folder = cfg.stage_dir(stage)
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    record = folder / STAGE_RECORD
    if not record.is_file():
        return {"(no config.yaml)": ("unknown", "this config")}
    sections = stage_sections(cfg, stage)
    old = stage_keys(_recorded(record), sections)
    new = stage_keys(to_dict(cfg), sections)
    missing = "(not set)"
    return {k: (old.get(k, missing), new.get(k, missing))
            for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)}


def check_stages(cfg: ExperimentConfig, stages) -> None:
    """Raise :class:`RunConflict` for the first of ``stages`` whose folder holds results of a
    different config (nothing is written or deleted)."""
    for stage in sorted(stages):
        diff = stage_differences(cfg, stage)
        if not diff:
            continue
        folder = cfg.stage_dir(stage)
        lines = [f"{folder} holds {STAGE_NAMES[stage]} results of another config "
                 f"({folder / STAGE_RECORD}); these keys differ (recorded -> now):"]
        lines += [f"  {key}: {show_value(a)} -> {show_value(b)}" for key, (a, b) in diff.items()]
        lines.append(
            f"Nothing was changed. Either start a new run: --set name={cfg.name}_2 (any new name), "
            f"or clear {STAGE_NAMES[stage]} and every later stage of {cfg.run_dir} and rerun: "
            f"--restart stage{stage}"
        )
        raise RunConflict("\n".join(lines))


def show_value(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith("(") else yaml.safe_dump(
        value, default_flow_style=True).strip().removesuffix("...").strip()


def record_stage(cfg: ExperimentConfig, stage: int) -> pathlib.Path:
    """Write ``stageN/config.yaml`` (the resolved config the stage runs with) and
    ``stageN/version.txt``."""
    folder = cfg.stage_dir(stage)
    dump_yaml(cfg, folder / STAGE_RECORD)
    atomic_write_text(folder / "version.txt", code_version() + "\n")
    return folder / STAGE_RECORD


def restart_from(cfg: ExperimentConfig, stage: int) -> list[pathlib.Path]:
    """``--restart stageN``: delete the folders of stage ``N`` and every later stage, the
    comparisons (``compare/``, for stage 1 or 3), the evaluation, and their entries in
    ``models.json``; return what was deleted. Callers check everything first
    (:func:`iac_tf.pipeline` deletes only after the config, the data and the U-Net passed)."""
    if stage not in STAGES:
        raise ConfigError(f"--restart: expected stage1, stage2 or stage3, got stage{stage}")
    layout = cfg.layout
    # the comparisons (compare/) depend on Stage I's U-Net and on the stage3 training settings
    compare = [layout.compare_root] if stage in (1, 3) else []
    gone = [p for p in [layout.stage(s) for s in STAGES if s >= stage] + compare
            + [layout.evaluation] if p.exists()]
    check_removable(gone, "a result of this run", f"Nothing was deleted; move it out of {layout.root}, "
                    f"then rerun with --restart stage{stage}")
    for path in gone:
        remove(path)
    layout.unregister_inside(gone)
    return gone


def write_resolved(cfg: ExperimentConfig) -> pathlib.Path:
    """Mark the run folder as the tool's and write ``config.yaml`` (resolved) and
    ``version.txt`` into it."""
    layout = cfg.layout
    layout.claim()
    dump_yaml(cfg, layout.config)
    atomic_write_text(layout.version, code_version() + "\n")
    return cfg.run_dir
