"""The experiment YAML: one file configures data, the U-Net and all three stages.

```yaml
name: sample_base            # results go to {output_dir}/{name}/
output_dir: runs
seed: 0
deterministic: false         # TF op determinism: same numbers on the same kind of machine (README)
data:   {...}                # iac_tf.data.DataConfig
unet:   {backbone: base}     # UNetConfig
stage1: {epochs: 200}        # Stage1Config
stage2: {epochs: 200}        # Stage2Config
stage3: {epochs: 200}        # Stage3Config
evaluation: {split: val_dt}  # EvaluationConfig (metric: labels | paper_channels)
method: iac                  # what the run improves the U-Net with (iac or a comparison)
compare: [attention]         # comparison methods trained on the same frozen U-Net and splits
```
Every section is a frozen dataclass: unknown keys and wrong types are rejected with the key's
dotted path. Loading a config imports no TensorFlow. The resolved config and the code version
are written into the run folder, and each stage folder records the resolved config it ran with
(:mod:`iac_tf.run_records`).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Literal

from iac_tf.config import ConfigError, from_dict, load_yaml
from iac_tf.config.data import SPLITS, DataConfig
from iac_tf.config.stages import Stage1Config, Stage2Config, Stage3Config
from iac_tf.files import is_run_folder

#: The comparison methods of ``method`` / ``compare`` (their modules are the rows of
#: ``iac_tf.comparisons.METHODS``; named here so that loading a config needs no TensorFlow).
COMPARISON_METHODS = ("attention", "residual_attention", "nested")


def comparison_methods(method: str, compare) -> tuple[str, ...]:
    """The comparison methods a run of ``method`` / ``compare`` trains: ``method`` (if not
    ``iac``: a comparison-only run has no IAC), then ``compare``, each once."""
    return tuple(dict.fromkeys(((method,) if method != "iac" else ()) + tuple(compare)))


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
            be skipped. Say which cases it was trained on with ``data.splits_file`` +
            ``data.fold`` or ``data.unet_train_cases`` (``iac doctor`` warns otherwise).
        expected_dice: the given U-Net's own mean Dice (as its training reported it, in
            (0, 1]), or ``null``. Before Stage II the tool scores the given U-Net on val_dt with
            its own preprocessing and logs both; more than
            :data:`iac_tf.pipeline.given_unet.EXPECTED_DICE_TOLERANCE` (0.1) below it is a
            warning naming preprocessing as the usual cause. It changes no result.
        output: the head of the U-Net Stage I builds: ``sigmoid`` (default, the paper's: one
            per class, Dice loss) or ``softmax`` over background + classes (Dice of the classes
            + cross-entropy, labels by argmax; exclusive classes only). A given U-Net's output
            is read from its file.
    """

    backbone: str = "base"
    encoder_weights: str | None = None
    decoder_filters: tuple[int, ...] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained: str | None = None
    expected_dice: float | None = None
    output: Literal["sigmoid", "softmax"] = "sigmoid"

    def __post_init__(self):
        if self.expected_dice is not None and not 0.0 < self.expected_dice <= 1.0:
            raise ValueError(f"expected_dice must be in (0, 1] (a Dice, not a percentage), "
                             f"got {self.expected_dice}")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """The ``evaluation:`` section: which split the final Dice table is computed on.

    Args:
        split: a split name (``val_dt`` as in the paper).
        batch_size: prediction batch size.
        unet_continued: also train the budget-matched baseline ``unet_continued`` (the U-Net
            trained further from its best checkpoint for ``stage3.epochs`` with Stage III's
            optimiser and selection; our choice, not in the paper) and report the IAC
            against both the U-Net and it.
        metric: how every Dice of the run turns probabilities into what it scores, the
            epoch-selection metrics (``val_soft_dice``, ``val_case_dice``) included:
            ``labels`` (default, our choice): the dataset's decision rule, one label per voxel
            (exclusive classes: the most probable class above 0.5; nested regions: painted
            most specific last), the label map ``iac predict`` writes
            (:class:`iac_tf.labels.LabelRule`); ``paper_channels``: each output
            channel thresholded at 0.5 and scored on its own (the paper, Section IV-B). See
            docs/decisions.md, "One rule from probabilities to labels".
        tta: the whole-volume scores (val_dt, test_dt) predict as ``iac predict`` does by
            default, with mirroring (test-time augmentation, nnU-Net's default) on, so they
            equal ``iac predict`` + ``iac evaluate-folder``; ``false``: one pass per window
            (4x faster; then compare with ``iac predict --no-tta``).
    """

    split: str = "val_dt"
    batch_size: int = 32
    unet_continued: bool = True
    metric: Literal["labels", "paper_channels"] = "labels"
    tta: bool = True

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
        METHODS = COMPARISON_METHODS
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
        """The comparison methods this run trains (:func:`comparison_methods`)."""
        return comparison_methods(self.method, self.compare)

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.output_dir) / self.name


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
        cfg = from_dict(ExperimentConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return _where_the_run_is(cfg, pathlib.Path(path), overrides or {})


def _where_the_run_is(cfg: ExperimentConfig, path: pathlib.Path, overrides: dict
                      ) -> ExperimentConfig:
    """A YAML file at the root of a run folder (beside its ``.iac-run`` marker: the run's own
    config, which only the tool writes there) names the folder it was written in; a run moved
    since is the folder the file is in now (unless ``--set`` names output_dir or name)."""
    here = path.parent
    if not is_run_folder(here) or {"output_dir", "name"} & set(overrides):
        return cfg
    if cfg.run_dir.resolve() == here.resolve():
        return cfg
    logging.getLogger(__name__).info("%s: the run's own config, now in %s (it was written for "
                                     "%s): using %s", path, here, cfg.run_dir, here)
    return dataclasses.replace(cfg, output_dir=str(here.parent), name=here.name)
