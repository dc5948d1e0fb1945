"""``iac export``: a TF-Serving-ready SavedModel of a trained (IAC) U-Net.

Layout: ``OUT/1/`` (the version folder TF Serving expects: ``saved_model.pb``, ``variables/``)
and ``OUT/preprocessing.json`` (outside the version folders, which TF Serving ignores). The
signature ``serving_default`` takes ``image``: float32 ``(None, H, W, C)`` already NORMALISED
slices and returns ``probabilities`` float32 ``(None, H, W, N)`` and ``labels`` int32
``(None, H, W)`` (the dataset's label values, :mod:`iac_tf.inference.labels`).

The intensity normalisation is NOT inside the graph: it uses statistics of the whole volume
(mean/std of each channel, CT percentiles), which one slice request cannot compute. What the
caller must do is written to ``preprocessing.json`` (and is what ``iac predict`` does): per
channel, ``low, high, mean, std`` over the whole volume as
:func:`iac_tf.data.preprocess.intensity_stats` (CT: clip to the HU window or the volume's
percentiles, then mean/std of the clipped values; MRI: mean/std, over non-zero voxels with
``mri_nonzero``), ``x = (clip(v, low, high) - mean) / std``; reorient to RAS if ``reorient``;
zoom in-plane by ``zoom``; cut ``H x W`` windows of the axial slices.

Before success is reported the folder is reloaded with ``tf.saved_model.load`` and its
signature must reproduce the Keras model's probabilities (max abs difference <= 1e-4) and labels
on a test batch; the export is written to a temp folder and moved into place only then.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from iac_tf._keras import keras, tf
from iac_tf.files import atomic_path, atomic_write_json
from iac_tf.inference.labels import probabilities_to_labels, probabilities_to_labels_tf

SIGNATURE = "serving_default"
TOLERANCE = 1e-4  # probabilities; graph vs eager oneDNN kernels differ by ~1e-6


class ServingModule(tf.Module):
    """The Keras model plus the label rule, as a ``tf.Module`` with a serving signature.

    Only the model's variables are tracked (the function closes over the model): tracking the
    Keras model itself would make ``tf.saved_model.save`` trace every layer for Keras metadata,
    which is slow and not needed for serving.
    """

    def __init__(self, model: keras.Model, classes):
        super().__init__()
        self.model_variables = list(model.variables)
        classes = [list(map(int, v)) for v in classes]
        h, w, c = (int(d) for d in model.input_shape[1:])

        def serve(image):
            probs = tf.cast(model(image, training=False), tf.float32)
            return {"probabilities": probs,
                    "labels": probabilities_to_labels_tf(probs, classes)}

        self.serve = tf.function(
            serve, input_signature=[tf.TensorSpec((None, h, w, c), tf.float32, name="image")])


def export_serving(model: keras.Model, out: str | os.PathLike, classes, *,
                   preprocessing=None, version: int = 1, seed: int = 0) -> dict:
    """Export ``model`` to ``out/<version>/``, verify the reload, return the check's numbers.

    ``classes``: the label values of each output channel; ``preprocessing``: a
    :class:`~iac_tf.inference.volume.Preprocessing` written to ``out/preprocessing.json``.

    Raises:
        ValueError: the reloaded signature disagrees with the Keras model (nothing is left).
    """
    out = pathlib.Path(out)
    final = out / str(version)
    if len(classes) != int(model.output_shape[-1]):
        raise ValueError(f"{len(classes)} classes for a model with {model.output_shape[-1]} "
                         "output channels")
    with atomic_path(final) as tmp:  # published only if the check passes
        module = ServingModule(model, classes)
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve})
        check = verify_serving(tmp, model, classes, seed=seed)
    info = {"signature": SIGNATURE, "input": {"image": ["None", *map(int, model.input_shape[1:])]},
            "outputs": ["probabilities", "labels"], "normalisation_in_graph": False,
            "check": check}
    if preprocessing is not None:
        info["preprocessing"] = _jsonable(dataclasses.asdict(preprocessing))
    atomic_write_json(out / "preprocessing.json", info)
    return check


def verify_serving(path, model: keras.Model, classes, batch: int = 4, seed: int = 0) -> dict:
    """Reload ``path`` with ``tf.saved_model.load`` and compare its signature with ``model``."""
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[SIGNATURE]
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (batch,) + tuple(int(d) for d in model.input_shape[1:]))
    x = x.astype(np.float32)
    out = fn(image=tf.constant(x))
    want = np.asarray(model(x, training=False), np.float32)
    got = np.asarray(out["probabilities"], np.float32)
    diff = float(np.abs(got - want).max())
    labels_equal = bool(np.array_equal(np.asarray(out["labels"]),
                                       probabilities_to_labels(got, classes)))
    if diff > TOLERANCE or not labels_equal:
        raise ValueError(f"{path}: the reloaded SavedModel disagrees with the Keras model "
                         f"(max |difference| {diff:.3g}, labels equal: {labels_equal})")
    return {"max_abs_difference": diff, "labels_equal": labels_equal, "batch": batch}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
