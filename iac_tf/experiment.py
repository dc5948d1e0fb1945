"""The experiment YAML's schema (:mod:`iac_tf.config.experiment`) under its short name:
``load_experiment``, ``ExperimentConfig`` and its sections. Loading a config imports no
TensorFlow."""

from iac_tf.config.experiment import (COMPARISON_METHODS, EvaluationConfig, ExperimentConfig,
                                      UNetConfig, check_run_name, load_experiment)
from iac_tf.config.stages import Stage1Config, Stage2Config, Stage3Config

__all__ = ["COMPARISON_METHODS", "EvaluationConfig", "ExperimentConfig", "Stage1Config",
           "Stage2Config", "Stage3Config", "UNetConfig", "check_run_name", "load_experiment"]
