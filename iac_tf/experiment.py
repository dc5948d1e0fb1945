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
```
Every section is a frozen dataclass: unknown keys and wrong types are rejected with the key's
dotted path. The resolved config and the code version are written into the run folder.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from iac_tf.config import ConfigError, dump_yaml, from_dict, load_yaml
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
    """A whole experiment (see the module docstring)."""

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

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.output_dir) / self.name

    def stage_dir(self, stage: int) -> pathlib.Path:
        return self.run_dir / f"stage{stage}"


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


def write_resolved(cfg: ExperimentConfig) -> pathlib.Path:
    """Write ``config.yaml`` (resolved) and ``version.txt`` into the run folder."""
    from iac_tf.training.runs import atomic_write_text, code_version

    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, cfg.run_dir / "config.yaml")
    atomic_write_text(cfg.run_dir / "version.txt", code_version() + "\n")
    return cfg.run_dir
