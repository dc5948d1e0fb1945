"""Use a trained (IAC) U-Net on whole scans: ``iac predict`` and ``iac export``.

Modules: ``tiling`` (sliding windows over slices of any size), ``volume`` (the run's preprocessing of one
volume and its inverse), ``inputs`` (INPUT -> cases, header checks), ``model_source`` (MODEL ->
a loaded model and its run config), ``predict`` (the whole command), ``export`` (TF Serving),
``client`` (the recipe around an exported SavedModel as one function, ``predict_nifti``),
``api`` (the Python calls behind the commands), ``cli`` (their arguments), ``run_scores``
(volumetric scores of a run's evaluation split, for ``iac run``).

The names below are imported on first use, so ``iac --help`` does not import TensorFlow. The
decision rule from probabilities to label values (``LabelRule``, ``probabilities_to_labels``, ...)
is :mod:`iac_tf.labels`, below this package: training, evaluation and inference all ask it. The
run's preprocessing record (``Preprocessing``) is :mod:`iac_tf.data.preprocessing`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LoadedModel": "model_source", "find_run_config": "model_source",
    "load_model": "model_source", "resolve_model_path": "model_source",
    "Preprocessing": "iac_tf.data.preprocessing",
    "export_serving": "export", "verify_serving": "export",
    "paint_values": "iac_tf.labels", "probabilities_to_labels": "iac_tf.labels",
    "LabelRule": "iac_tf.labels", "label_mode": "iac_tf.labels",
    "format_summary": "predict", "predict_cases": "predict", "predict_volume": "predict",
    "load_export": "client", "predict_nifti": "client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'iac_tf.inference' has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if "." in module else f"iac_tf.inference.{module}"), name)
