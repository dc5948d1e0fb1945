"""The three stages as Python calls over one :class:`~iac_tf.config.experiment.ExperimentConfig`
(what the ``iac`` CLI and the notebooks use)::

    from iac_tf.config.experiment import load_experiment
    from iac_tf import pipeline
    cfg = load_experiment("experiments/sample.yaml")
    pipeline.run_stage1(cfg); pipeline.run_stage2(cfg); pipeline.run_stage3(cfg)
    pipeline.run_compare(cfg)       # the comparison methods of `compare:` (compare/<method>/)
    pipeline.evaluate(cfg)          # every model of models.json against the U-Net

Modules: ``plan`` (the run plan every command is: its steps, skips, units, checks and what
``--restart`` removes), ``common`` (the lock, the checks before any write, data sources),
``units`` (one unit of training; every trained model of a run is a row of its table),
``stages`` (the stage commands, the executor of a plan, the genotype-epoch sweep and its
selection), ``evaluate``.

The run folder's layout is :mod:`iac_tf.run_layout`; every trained model is registered in its
``models.json`` (``unet``, ``iac``, ``iac_epoch_XXX``, ``attention``, ...). Every stage first
compares the config with the records of the stage folders it uses
(:func:`iac_tf.run_records.check_stages`) and stops with
:class:`~iac_tf.run_records.RunConflict` before touching any file if they differ; a finished
stage with the same config is skipped. Messages go to the ``iac_tf`` logger
(:mod:`iac_tf.console`).

Two different Dice numbers appear: the *soft Dice* (slice level, on the sigmoid outputs) that
selects each stage's best epoch, and the *per-case Dice* of the evaluation (hard masks, one
score per case and class, the paper's Table numbers). Both follow the run's one decision rule
from probabilities to labels (:func:`iac_tf.pipeline.common.label_rule`,
``evaluation.metric``).
"""

import iac_tf.comparisons  # noqa: F401  (registers the comparison modules, so they load)
import iac_tf.search  # noqa: F401  (registers the IAC cells, so IAC U-Nets load)
from iac_tf.pipeline.common import prepare, trained_unet_path
from iac_tf.pipeline.evaluate import evaluation_models
from iac_tf.pipeline.stages import (evaluate, run_all, run_compare, run_stage1, run_stage2,
                                    run_stage3, run_unet_continued, select_genotype,
                                    stage3_genotype_path, stage3_units)
from iac_tf.pipeline.units import TrainingUnit, train_unit

__all__ = ["TrainingUnit", "evaluate", "evaluation_models", "prepare", "run_all", "run_compare",
           "run_stage1", "run_stage2", "run_stage3", "run_unet_continued", "select_genotype",
           "stage3_genotype_path", "stage3_units", "train_unit", "trained_unet_path"]
