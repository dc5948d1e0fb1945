"""``MODEL`` of ``iac predict`` / ``iac export``: a run folder, a ``.keras``/``.h5`` file, a Keras
SavedModel folder or a serving SavedModel written by ``iac export``; and the run config that
holds the preprocessing.

In a run folder the model is looked up in ``models.json`` (:mod:`iac_tf.run_layout`): ``iac``
(default, the final IAC U-Net), ``unet`` (``--stage 1``) or ``--method NAME``; without an index
the stage folders' ``best_model.keras`` are used; a stage folder means its ``best_model.keras``.
The run config is the nearest ``config.yaml`` at or above the model (a stage folder's record or
the run's; ``--config`` overrides).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Callable, Iterator

import numpy as np

from iac_tf._keras import tf
from iac_tf.errors import UserError
from iac_tf.inference.tiling import keras_predictor
from iac_tf.models import load_unet
from iac_tf.run_layout import BEST_MODEL, CONFIG, MODELS_INDEX, RunLayout
from iac_tf.run_unet import checked_model

#: ``--device``: TensorFlow's own choice (a GPU when one is visible), the CPU, or a GPU.
DEVICES = ("auto", "cpu", "gpu")


@contextlib.contextmanager
def device_scope(device: str = "auto") -> Iterator[None]:
    """Load and run the model inside this scope to place it on ``device`` (:data:`DEVICES`):
    ``cpu`` even when a GPU is visible, ``gpu`` the first visible GPU (refused when TensorFlow
    sees none), ``auto`` TensorFlow's placement."""
    if device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        yield
        return
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise UserError("--device gpu: TensorFlow sees no GPU on this machine (check the CUDA "
                        "driver with nvidia-smi); nothing was written. Use --device cpu or auto")
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        yield


@dataclasses.dataclass
class LoadedModel:
    """A model ready to predict: ``predict(batch (B,H,W,C)) -> (B,H,W,N)`` probabilities."""

    path: pathlib.Path
    predict: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int, int, int]  # (H, W, C)
    num_classes: int
    keras_model: object | None = None


def resolve_model_path(model: str | pathlib.Path, stage: int | None = None,
                       method: str | None = None) -> pathlib.Path:
    """The model file of ``model`` (see the module docstring): of a run folder, the model
    ``method`` names, else the U-Net (``stage`` 1) or the IAC U-Net (``stage`` 3, the
    default). ``stage`` and ``method`` together are refused: one would be ignored."""
    if stage is not None and method is not None:
        raise UserError(f"--stage {stage} and --method {method} both choose the model; give one "
                        f"(--method names any model of the run's {MODELS_INDEX}; --stage 1 is "
                        "--method unet, --stage 3 is --method iac)")
    stage = 3 if stage is None else stage
    model = pathlib.Path(model)
    if not model.exists():
        raise FileNotFoundError(f"{model}: model not found")
    if model.is_dir() and (model / BEST_MODEL).is_file():
        return model / BEST_MODEL  # a stage folder (runs/NAME/stage3)
    if not (model.is_dir() and RunLayout(model).config.is_file()):
        return model  # a model file or a SavedModel folder
    name = method or ("unet" if stage == 1 else "iac")
    layout = RunLayout(model)
    index = layout.model_paths()
    if name not in index:
        raise UserError(f"{layout.models_index}: no model {name!r} (it would be "
                        f"{layout.best_model(layout.model_folder(name))}: has that stage "
                        "run?); registered: "
                        f"{sorted(index) or 'none'}")
    path = index[name]
    if name == "unet":
        path = checked_model(layout, path)  # the run's own copy, its hash checked
    if not path.exists():
        raise FileNotFoundError(f"{path}: model {name!r} of run {model} not found (has that "
                                "stage run?)")
    return path


def find_run_config(model: str | pathlib.Path) -> pathlib.Path:
    """``config.yaml`` of the run that ``model`` belongs to (searched upwards, 4 levels)."""
    path = pathlib.Path(model).resolve()
    for folder in [path] + list(path.parents)[:4]:
        config = RunLayout(folder).config
        if config.is_file():
            return config
    raise FileNotFoundError(f"{model}: no {CONFIG} of a run found next to the model; pass "
                            f"--config RUN/{CONFIG} (the preprocessing is read from it)")


def _serving_dir(path: pathlib.Path) -> pathlib.Path | None:
    """The newest version folder of an ``iac export`` folder (``OUT/1``, ``OUT/2`` ...), or
    ``path`` itself if it is a SavedModel without Keras metadata."""
    versions = sorted((p for p in path.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name))
    if versions and (versions[-1] / "saved_model.pb").is_file():
        return versions[-1]
    if (path / "saved_model.pb").is_file() and not (path / "keras_metadata.pb").is_file():
        return path
    return None


def load_model(path: str | pathlib.Path) -> LoadedModel:
    """Load ``path`` for prediction (errors name the file)."""
    path = pathlib.Path(path)
    serving = _serving_dir(path) if path.is_dir() else None
    if serving is not None:
        return _load_serving(serving)
    model = load_unet(path)
    h, w, c = (int(d) for d in model.input_shape[1:])
    return LoadedModel(path, keras_predictor(model), (h, w, c), int(model.output_shape[-1]),
                       model)


def _load_serving(path: pathlib.Path) -> LoadedModel:
    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise UserError(f"{path}: could not load a serving SavedModel ({exc})") from exc
    spec = fn.structured_input_signature[1].get("image")
    if spec is None:
        raise UserError(f"{path}: serving_default has no 'image' input")
    h, w, c = (int(d) for d in spec.shape[1:])
    n = int(fn.structured_outputs["probabilities"].shape[-1])

    def predict(batch):
        return np.asarray(fn(image=tf.constant(batch, tf.float32))["probabilities"], np.float32)

    predict.loaded = loaded  # keep the trackable object alive
    return LoadedModel(path, predict, (h, w, c), n)
