"""The Python API behind ``iac predict`` and ``iac export``::

    from iac_tf.inference.api import predict, export
    predict("runs/sample_base", ["scans/imagesTs"], "scans/predictions")   # nnU-Net's defaults
    predict("runs/sample_base", ["scans/imagesTs"], "fast/", tta=False, step_size=1.0,
            device="cpu")
    export("runs/sample_base", "serving/iac_unet")
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

from iac_tf.data.fingerprint import data_record, same_as_legacy
from iac_tf.errors import UserError
from iac_tf.config.experiment import load_experiment
from iac_tf.inference.export import PREPROCESSING_JSON, check_export_folder, export_serving
from iac_tf.inference.inputs import check_cases, collect_cases
from iac_tf.inference.model_source import (LoadedModel, device_scope, find_run_config,
                                           load_model, resolve_model_path)
from iac_tf.inference.predict import check_batch_size, check_outputs, predict_cases
from iac_tf.inference.tiling import STEP_SIZE, check_step_size
from iac_tf.data.preprocessing import Preprocessing
from iac_tf.run_layout import RunLayout


def load_run_preprocessing(model_path: pathlib.Path, config: str | None = None,
                           modality: Sequence[str] | None = None) -> Preprocessing:
    """The preprocessing of the run ``model_path`` belongs to: what the run recorded of its
    dataset at training time (``data_record.json`` beside its ``config.yaml``), so whichever
    dataset the working directory holds now is never read. ``config`` (another run config)
    or a run without that record (written before it existed): read from the config's
    ``data.root``. An ``iac export`` folder outside a run: its ``preprocessing.json``."""
    try:
        run_config = find_run_config(model_path)
    except FileNotFoundError:
        exported = _export_preprocessing(model_path)
        if exported is not None and not config:
            return Preprocessing.from_record(exported, modality)
        if not config:
            raise
        run_config = None
    layout = RunLayout(run_config.parent) if run_config else None
    record = layout.read_data_record() if layout else None
    if not config and record and record.get("preprocessing"):
        return Preprocessing.from_record(record["preprocessing"], modality)
    cfg = load_experiment(config or run_config)
    if record is not None:  # --config must describe the run's own dataset
        layout.check_data(data_record(cfg.data, record),
                          lambda old: same_as_legacy(old, cfg.data))
    return Preprocessing.from_data_config(cfg.data, modality)


def _export_preprocessing(model_path: pathlib.Path) -> dict | None:
    """The ``preprocessing`` of an ``iac export`` folder (``OUT`` or ``OUT/N``), else ``None``."""
    for folder in (model_path, model_path.parent):
        info = folder / PREPROCESSING_JSON
        if model_path.is_dir() and info.is_file():
            try:
                return json.loads(info.read_text()).get("preprocessing")
            except (OSError, ValueError, AttributeError):
                return None
    return None


def resolve(model, stage: int | None = None, method: str | None = None, config: str | None = None,
            modality: Sequence[str] | None = None, inputs: Sequence[str] | None = None
            ) -> tuple[LoadedModel, Preprocessing]:
    """The model and the run's preprocessing; ``inputs`` are checked (headers, the dataset's
    channel count) before the model is loaded, so bad input fails fast."""
    path = resolve_model_path(model, stage, method)
    prep = load_run_preprocessing(pathlib.Path(model), config, modality)
    if inputs is not None:
        check_cases(collect_cases(inputs), len(prep.modalities))
    loaded = load_model(path)
    if loaded.input_shape[0] != loaded.input_shape[1]:
        raise UserError(f"{path}: square inputs expected, got {loaded.input_shape[:2]}")
    return loaded, prep


def predict(model, inputs: Sequence[str], output: str, *, stage: int | None = None,
            method: str | None = None, config: str | None = None,
            modality: Sequence[str] | None = None, save_probabilities: bool = False,
            batch_size: int = 32, step_size: float = STEP_SIZE, tta: bool = True,
            device: str = "auto", progress: bool = True) -> list[dict]:
    """``iac predict``: see :func:`iac_tf.inference.predict.predict_cases`. ``step_size``
    (0.5), ``tta`` (mirroring, on) are nnU-Net's defaults; ``device``: ``auto``, ``cpu`` or
    ``gpu`` (:func:`~iac_tf.inference.model_source.device_scope`)."""
    check_batch_size(batch_size)
    check_step_size(step_size)
    check_outputs(collect_cases(inputs), output, save_probabilities)  # before the model loads
    with device_scope(device):
        loaded, prep = resolve(model, stage, method, config, modality, inputs)
        return predict_cases(loaded, inputs, output, prep, batch_size=batch_size,
                             step_size=step_size, tta=tta,
                             save_probabilities=save_probabilities, progress=progress)


def export(model, out: str, *, stage: int | None = None, method: str | None = None,
           config: str | None = None) -> dict:
    """``iac export``: see :func:`iac_tf.inference.export.export_serving`."""
    check_export_folder(out)  # before the model loads
    loaded, prep = resolve(model, stage, method, config)
    if loaded.keras_model is None:
        raise UserError(f"{loaded.path}: already a serving SavedModel; export a Keras model")
    return export_serving(loaded.keras_model, out, prep.classes, preprocessing=prep)
