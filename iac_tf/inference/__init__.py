"""Use a trained (IAC) U-Net on whole scans: ``iac predict`` and ``iac export``.

Modules: ``labels`` (probabilities -> the dataset's label values, overlapping regions),
``tiling`` (sliding windows over slices of any size), ``volume`` (the run's preprocessing of one
volume and its inverse), ``inputs`` (INPUT -> cases, header checks), ``model_source`` (MODEL ->
a loaded model and its run config), ``predict`` (the whole command), ``export`` (TF Serving),
``run_scores`` (volumetric scores of a run's evaluation split, for ``iac run``).
"""

from iac_tf.inference.export import export_serving, verify_serving
from iac_tf.inference.labels import paint_values, probabilities_to_labels
from iac_tf.inference.model_source import (LoadedModel, find_run_config, load_model,
                                           resolve_model_path)
from iac_tf.inference.predict import format_summary, predict_cases, predict_volume
from iac_tf.inference.volume import Preprocessing

__all__ = [
    "LoadedModel",
    "Preprocessing",
    "export_serving",
    "find_run_config",
    "format_summary",
    "load_model",
    "paint_values",
    "predict_cases",
    "predict_volume",
    "probabilities_to_labels",
    "resolve_model_path",
    "verify_serving",
]
