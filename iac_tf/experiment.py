"""The experiment YAML: one file configures data, the U-Net and all three stages.

```yaml
name: sample_base            # results go to {output_dir}/{name}/
output_dir: runs
seed: 0
deterministic: false         # TF op determinism (slower; exact resume of Stage II)
data:   {...}                # iac_tf.data.DataConfig
unet:   {backbone: base}     # UNetConfig
stage1: {epochs: 200}        # Stage1Config
stage2: {epochs: 200}        # Stage2Config
stage3: {epochs: 200}        # Stage3Config
evaluation: {split: val_dt}  # EvaluationConfig
method: iac                  # what the run improves the U-Net with (iac or a comparison)
compare: [attention]         # comparison methods trained on the same frozen U-Net and splits
```
Every section is a frozen dataclass: unknown keys and wrong types are rejected with the key's
dotted path. The resolved config and the code version are written into the run folder, and each
stage folder records the resolved config it ran with (``stageN/config.yaml``). Before a stage
touches its folder, :func:`check_stages` compares the new config with those records: the same
config resumes (or skips a finished stage); a different one stops with :class:`RunConflict`
naming the differing keys, leaving every file untouched. Which keys matter to which stage:
:func:`stage_keys`; ``--restart stageN`` (:func:`restart_from`) clears a stage and all later ones.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import yaml

from iac_tf.config import ConfigError, dump_yaml, from_dict, load_yaml, to_dict
from iac_tf.files import atomic_write_text, remove
from iac_tf.run_layout import RunLayout
from iac_tf.version import code_version
from iac_tf.data.config import SPLITS, DataConfig
from iac_tf.training.stage1 import Stage1Config
from iac_tf.training.stage2 import Stage2Config
from iac_tf.training.stage3 import Stage3Config


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The ``unet:`` section.

    Args:
        backbone: one of ``iac_tf.unets.BACKBONES`` (used when Stage I builds the U-Net).
        encoder_weights: ``null`` (random init) or ``imagenet`` / a weights file, passed through
            to the encoder (ImageNet weights need network access the first time).
        decoder_filters: filters per decoder stage, deepest first; ``null``: the zoo's default
            (segmentation_models' ``[256, 128, 64, 32, 16]``; mirrored encoder filters for base).
        options: backbone options passed to ``build_unet`` (e.g. ``{base_filters: 16}`` for
            ``base``, ``{alpha: 0.75}`` for ``mobilenetv3_large``).
        pretrained: path of an already trained U-Net (``.keras``, ``.h5`` or SavedModel). When
            set, Stages II and III use it instead of Stage I's best checkpoint, and Stage I may
            be skipped.
    """

    backbone: str = "base"
    encoder_weights: str | None = None
    decoder_filters: tuple[int, ...] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained: str | None = None


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """The ``evaluation:`` section: which split the final Dice table is computed on.

    Args:
        split: a split name (``val_dt`` as in the paper).
        batch_size: prediction batch size.
        unet_continued: also train the budget-matched baseline ``unet_continued`` (the U-Net
            trained further from its best checkpoint for ``stage3.epochs`` with Stage III's
            optimiser and selection; our choice, issue 11, not in the paper) and report the IAC
            against both the U-Net and it.
    """

    split: str = "val_dt"
    batch_size: int = 32
    unet_continued: bool = True

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment (see the module docstring).

    Args:
        method: ``iac`` (default, the paper's method: Stages II and III) or a comparison method
            of ``iac_tf.comparisons.METHODS`` (then ``iac run`` trains only that comparison after
            Stage I, into ``compare/<method>/``).
        compare: comparison methods (paper Section V-A, Table II) to train as well, each like
            Stage III (frozen U-Net, ``stage3`` training settings, best epoch by val_dt Dice) into
            ``compare/<method>/``; the evaluation has one column per method. Default: none.
    """

    data: DataConfig
    name: str = "experiment"
    output_dir: str = "runs"
    seed: int = 0
    deterministic: bool = False
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    stage2: Stage2Config = dataclasses.field(default_factory=Stage2Config)
    stage3: Stage3Config = dataclasses.field(default_factory=Stage3Config)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    method: str = "iac"
    compare: tuple[str, ...] = ()

    def __post_init__(self):
        from iac_tf.comparisons import METHODS

        if self.method != "iac" and self.method not in METHODS:
            raise ValueError(f"method must be 'iac' or one of {sorted(METHODS)}, got {self.method!r}")
        for name in self.compare:
            if name not in METHODS:
                raise ValueError(f"compare: unknown method {name!r}; choose from {sorted(METHODS)}")
        check_run_name(self.name)
        if len(set(self.compare)) != len(self.compare):
            raise ValueError(f"compare: methods listed twice in {list(self.compare)}")
        epochs = self.stage3.genotype_epochs or ()
        late = [e for e in epochs if e > self.stage2.epochs]
        if late and self.method == "iac":
            raise ValueError(f"stage3.genotype_epochs: epoch {late[0]} is beyond stage2.epochs="
                             f"{self.stage2.epochs}; Stage II writes genotypes for epochs 1..{self.stage2.epochs}")

    @property
    def comparisons(self) -> tuple[str, ...]:
        """The comparison methods this run trains: ``method`` (if not ``iac``), then ``compare``."""
        first = (self.method,) if self.method != "iac" else ()
        return first + tuple(m for m in self.compare if m not in first)

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.output_dir) / self.name

    @property
    def layout(self) -> RunLayout:
        """The run folder's paths, "finished" rules, lock and dataset record."""
        return RunLayout(self.run_dir)

    def stage_dir(self, stage: int) -> pathlib.Path:
        return self.layout.stage(stage)


def check_run_name(name: str) -> None:
    """``name`` is one folder name inside ``output_dir`` (not empty, ``.``, ``..`` or a path)."""
    if not name or name.strip() != name or name in (".", "..") or any(
            sep in name for sep in ("/", "\\", "\0")):
        raise ValueError(f"name: {name!r} must be a plain folder name inside output_dir (no "
                         "'/', not '.' or '..'); the run folder is output_dir/name")


def load_experiment(path, overrides: dict | None = None) -> ExperimentConfig:
    """Load an experiment YAML; relative paths inside it (data root, cache, output, pretrained
    U-Net, genotype) are taken relative to the current working directory.

    ``overrides`` maps dotted keys to values (``{"stage1.epochs": 2}``), as the CLI's ``--set``.
    """
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {key} is not a section")
        node[keys[-1]] = value
    try:
        return from_dict(ExperimentConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


STAGES = (1, 2, 3)
STAGE_NAMES = {1: "Stage I", 2: "Stage II", 3: "Stage III"}
STAGE_RECORD = "config.yaml"

#: Keys that never block a rerun: they change how a stage reports or where files go, not what it
#: computes (``*`` matches any section). Our choice, see docs/decisions.md.
NON_BLOCKING = ("data.cache_dir", "*.verbose", "*.checkpoints_to_keep", "stage2.draw_genotypes",
                "stage3.export_savedmodel")


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
        lines += [f"  {key}: {_show(a)} -> {_show(b)}" for key, (a, b) in diff.items()]
        lines.append(
            f"Nothing was changed. Either start a new run: --set name={cfg.name}_2 (any new name), "
            f"or clear {STAGE_NAMES[stage]} and every later stage of {cfg.run_dir} and rerun: "
            f"--restart stage{stage}"
        )
        raise RunConflict("\n".join(lines))


def _show(value: Any) -> str:
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
