"""``iac export``: a TF-Serving-ready SavedModel of a trained (IAC) U-Net.

Layout: ``OUT/N/`` (a version folder as TF Serving expects: ``saved_model.pb``, ``variables/``)
and ``OUT/preprocessing.json`` (outside the version folders, which TF Serving ignores). Each
export writes the NEXT version (``OUT/1/`` in a new folder, ``OUT/3/`` beside ``1/`` and ``2/``),
so TF Serving, which serves the newest version, picks it up; older versions are kept.

``OUT`` must be new, empty, an export folder this tool wrote (marked by a ``.iac-export`` file)
or a TF Serving folder holding only numbered SavedModel versions (and ``preprocessing.json``);
anything else is refused before any work, and so is a folder that cannot be written. A failed
export leaves ``OUT`` as it was.

The versions of one served model share one signature (input ``H x W x C``, output channels,
classes) and one preprocessing recipe: TF Serving serves the newest version to every client, so
a model of another signature or recipe is refused before it is exported (export it into a new
``OUT``). Each version also keeps its own recipe beside its model,
``OUT/N/assets.extra/preprocessing.json`` (TF Serving ignores ``assets.extra``);
``OUT/preprocessing.json`` is the newest version's.

The signature ``serving_default`` takes ``image``: float32 ``(None, H, W, C)`` already
NORMALISED slices and returns ``probabilities`` float32 ``(None, H, W, N)`` (``N + 1`` for a
softmax over background + classes, channel 0 the background) and ``labels`` int32
``(None, H, W)`` (the dataset's label values by the tool's one decision rule,
:func:`iac_tf.labels.probabilities_to_labels_tf`, the twin of what ``iac predict`` and
every score use: the argmax for a softmax; ``preprocessing.json`` records it as ``label_rule``,
whose ``label_mode`` the client follows).

The intensity normalisation is NOT inside the graph: it uses statistics of the whole volume
(mean/std of each channel, CT percentiles), which one slice request cannot compute. What the
caller must do is what ``iac predict`` does, as runnable code in
:func:`iac_tf.inference.client.predict_nifti` (NumPy, SciPy, nibabel and this SavedModel);
``preprocessing.json`` holds its parameters (``preprocessing``: the run's, without the training
case ids) and its steps in words (``recipe``): whole-volume statistics, reorientation, in-plane
zoom (``zoom``, or the volume's voxel size over ``spacing``), normalisation, padding, nnU-Net's
sliding windows with mirroring and Gaussian blending, probabilities resampled back before
labelling.

Before success is reported the folder is reloaded with ``tf.saved_model.load`` and its
signature must reproduce the Keras model's probabilities (max abs difference <= 1e-4) and labels
on a test batch; the export is written to a temp folder and moved into place only then.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib

import numpy as np

from iac_tf.errors import UserError
from iac_tf._keras import keras, tf
from iac_tf.diskspace import DiskFullError, check_writable_folder, is_disk_full
from iac_tf.files import (EXPORT_MARKER, MANIFEST, RefusedPath, atomic_path, atomic_write_json,
                          discard, is_marked, mark, remove, target_problem)
from iac_tf.run_layout import check_replaceable_folder
from iac_tf.inference.client import RECIPE
from iac_tf.labels import (LabelRule, probabilities_to_labels,
                                     probabilities_to_labels_tf)

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
TOLERANCE = 1e-4  # probabilities; graph vs eager oneDNN kernels differ by ~1e-6
PREPROCESSING_JSON = "preprocessing.json"
#: Each version's own recipe, inside its folder (TF Serving ignores ``assets.extra``).
VERSION_RECIPE = "assets.extra/preprocessing.json"
WHAT = "a TF Serving export"


def export_versions(out: str | os.PathLike) -> list[int]:
    """The numbered version folders of ``out`` (sorted; none if ``out`` does not exist)."""
    out = pathlib.Path(out)
    if not out.is_dir():
        return []
    return sorted(int(p.name) for p in out.iterdir() if p.is_dir() and p.name.isdigit())


def _is_serving_folder(out: pathlib.Path) -> bool:
    """``out`` holds numbered SavedModel versions and nothing else but ``preprocessing.json``
    (a TF Serving model folder, e.g. written by another tool)."""
    entries = list(out.iterdir())
    versions = [p for p in entries if p.is_dir() and p.name.isdigit()]
    others = [p for p in entries if p not in versions and p.name != PREPROCESSING_JSON]
    return bool(versions) and not others and all(
        (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file() for p in versions)


def check_export_folder(out: str | os.PathLike) -> pathlib.Path:
    """Raise unless a new version may be exported into ``out``: it is new, empty, an export
    folder this tool wrote, or a TF Serving folder of numbered versions; and it can be written.

    Raises:
        RefusedPath: ``out`` is a file, a run folder, or holds other files.
        OSError: ``out`` (or the folder it would be created in) is not writable.
    """
    out = pathlib.Path(out)
    if not (out.is_dir() and not is_marked(out, EXPORT_MARKER) and _is_serving_folder(out)):
        check_replaceable_folder(out, EXPORT_MARKER, WHAT, "OUT")
    try:
        check_writable_folder(out, WHAT)
    except OSError as exc:
        raise type(exc)(exc.errno, f"{exc.strerror}; nothing was written, choose a writable "
                                   "OUT folder") from None
    return out


class ServingModule(tf.Module):
    """The Keras model plus the label rule, as a ``tf.Module`` with a serving signature.

    Only the model's variables are tracked (the function closes over the model): tracking the
    Keras model itself would make ``tf.saved_model.save`` trace every layer for Keras metadata,
    which is slow and not needed for serving.
    """

    def __init__(self, model: keras.Model, classes, mode: str | None = None):
        super().__init__()
        self.model_variables = list(model.variables)
        classes = [list(map(int, v)) for v in classes]
        h, w, c = (int(d) for d in model.input_shape[1:])

        def serve(image):
            probs = tf.cast(model(image, training=False), tf.float32)
            # plain TF ops; AutoGraph must not rewrite the rule's pure-Python helpers
            to_labels = tf.autograph.experimental.do_not_convert(probabilities_to_labels_tf)
            return {"probabilities": probs, "labels": to_labels(probs, classes, mode)}

        self.serve = tf.function(
            serve, input_signature=[tf.TensorSpec((None, h, w, c), tf.float32, name="image")])


def export_serving(model: keras.Model, out: str | os.PathLike, classes, *,
                   preprocessing=None, version: int | None = None, seed: int = 0) -> dict:
    """Export ``model`` to ``out/<version>/``, verify the reload, return the check's numbers
    plus ``version`` and ``path`` (the version folder written).

    ``classes``: the label values of each class (the model has one output channel per class,
    or a softmax over background + classes: :meth:`LabelRule.for_outputs`); ``preprocessing``: a
    :class:`~iac_tf.data.preprocessing.Preprocessing` written to ``out/preprocessing.json``;
    ``version``: ``None`` (default) writes the next version (the highest existing + 1, or 1);
    an explicit version must not exist yet.

    Raises:
        ValueError: the reloaded signature disagrees with the Keras model, or ``out`` is refused
            (:func:`check_export_folder`; :class:`~iac_tf.files.RefusedPath`).
        OSError: ``out`` cannot be written (checked first; a TensorFlow write error while saving
            is reported the same way). A failed export leaves ``out`` as it was.
    """
    out = pathlib.Path(out)
    try:
        rule = LabelRule.for_outputs(classes, int(model.output_shape[-1]))
    except ValueError as exc:
        raise UserError(f"the model does not suit the classes {[list(v) for v in classes]}: "
                        f"{exc}") from None
    check_export_folder(out)
    check_same_model(out, served_signature(model, classes), preprocessing)
    existing = export_versions(out)
    if version is None:
        version = max(existing, default=0) + 1
    elif isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    final = out / str(int(version))
    if final.exists() or int(version) in existing:
        raise RefusedPath(f"{final}: version {version} exists; versions are never overwritten, "
                          f"nothing was written. Leave the version unset to write the next one "
                          f"({max(existing, default=0) + 1})")
    # OUT/preprocessing.json of another tool is never replaced: each version has its own
    write_top = target_problem(out / PREPROCESSING_JSON) is None
    created = _missing_folders(out)
    marked = is_marked(out, EXPORT_MARKER)
    try:
        mark(out, EXPORT_MARKER, WHAT)
        try:
            with atomic_path(final, what=WHAT) as tmp:  # published only if the check passes
                module = ServingModule(model, classes, rule.mode)
                tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve})
                check = verify_serving(tmp, model, classes, seed=seed, mode=rule.mode)
                info = _info(model, classes, preprocessing, version, check, rule)
                atomic_write_json(tmp / VERSION_RECIPE, info)  # this version's own recipe
        except tf.errors.OpError as exc:
            if is_disk_full(exc):
                raise DiskFullError(out, None, "the SavedModel") from None
            reason = (exc.message or str(exc)).strip().splitlines()[0]
            raise OSError(f"{out}: could not write the SavedModel {final.name}/ "
                          f"({type(exc).__name__}: {reason}); nothing was written, choose a "
                          "writable OUT folder") from None
        try:
            if write_top:
                atomic_write_json(out / PREPROCESSING_JSON, info, what=WHAT)
        except BaseException:
            remove(final)
            raise
    except BaseException:
        _undo(out, created, marked)
        raise
    recipe = out / PREPROCESSING_JSON if write_top else final / VERSION_RECIPE
    if not write_top:
        log.warning("%s: not written by this tool, left as it is; the preprocessing of version "
                    "%d is in %s", out / PREPROCESSING_JSON, int(version), recipe)
    return {**check, "version": int(version), "path": str(final), "recipe": str(recipe)}


def _info(model, classes, preprocessing, version, check, rule: LabelRule) -> dict:
    """What ``preprocessing.json`` says of a version: its signature, classes, the caller's
    preprocessing, its number and the reload check."""
    info = {"signature": SIGNATURE,
            "input": {"image": ["None", *map(int, model.input_shape[1:])]},
            "outputs": ["probabilities", "labels"], "normalisation_in_graph": False,
            "classes": [list(map(int, v)) for v in classes],
            "label_rule": rule.record(),
            "version": int(version), "check": check}
    if preprocessing is not None:
        info["preprocessing"] = _prep_record(preprocessing)
        info["recipe"] = RECIPE
    return info


def _prep_record(preprocessing) -> dict:
    """The run's preprocessing as exported: without the training case ids."""
    record = dataclasses.asdict(preprocessing)
    record.pop("case_modalities", None)  # the training case ids stay out of the export
    return _jsonable(record)


def served_signature(model, classes) -> dict:
    """The signature every version of one served model shares: input ``[H, W, C]``, output
    channels and the label values of each."""
    return {"input": [int(d) for d in model.input_shape[1:]],
            "output channels": int(model.output_shape[-1]),
            "classes": [list(map(int, v)) for v in classes]}


def _recorded_signature(out: pathlib.Path) -> tuple[dict, dict | None] | None:
    """``(signature, preprocessing)`` of the versions in ``out``: from ``preprocessing.json``
    (written by this tool), else from the newest version's SavedModel (another tool's)."""
    versions = export_versions(out)
    if not versions:
        return None
    try:
        info = json.loads((out / PREPROCESSING_JSON).read_text())
        image = info["input"]["image"]
        classes = info.get("classes") or (info.get("preprocessing") or {}).get("classes")
        sig = {"input": [int(d) for d in image[1:]],
               "output channels": len(classes) if classes else None,
               "classes": [list(map(int, v)) for v in classes] if classes else None}
        return sig, info.get("preprocessing")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    newest = out / str(versions[-1])
    try:
        fn = tf.saved_model.load(str(newest)).signatures[SIGNATURE]
        image = list(fn.structured_input_signature[1].values())[0].shape
        probs = fn.structured_outputs.get("probabilities")
        channels = int(probs.shape[-1]) if probs is not None else None
    except Exception as exc:  # noqa: BLE001 - unknown is not different: say so, go on
        log.warning("%s: cannot read its %s signature (%s); the new version is not compared "
                    "with it. Versions of one served model must share one signature and "
                    "preprocessing", newest, SIGNATURE, type(exc).__name__)
        return None
    return {"input": [int(d) for d in image[1:]], "output channels": channels,
            "classes": None}, None


def check_same_model(out: pathlib.Path, signature: dict, preprocessing=None) -> None:
    """Raise :class:`~iac_tf.files.RefusedPath` if ``out`` already serves versions of another
    signature (input shape, output channels, classes) or another preprocessing recipe: TF
    Serving serves the newest version to every client, which would then get another model's
    outputs or preprocess for the wrong one."""
    found = _recorded_signature(pathlib.Path(out))
    if found is None:
        return
    old_sig, old_prep = found
    diffs = [f"{key} {old_sig[key]} -> {signature[key]}" for key in signature
             if old_sig.get(key) is not None and old_sig[key] != signature[key]]
    if preprocessing is not None and old_prep is not None:
        new_prep = json.loads(json.dumps(_prep_record(preprocessing)))
        old_prep = json.loads(json.dumps(old_prep))
        diffs += [f"preprocessing.{k} {old_prep.get(k)} -> {new_prep.get(k)}"
                  for k in sorted(set(old_prep) | set(new_prep))
                  if old_prep.get(k) != new_prep.get(k)]
    if diffs:
        raise RefusedPath(f"{out}: serves versions {export_versions(out)} of another model "
                          f"({'; '.join(diffs)}); the versions of one served model share one "
                          "signature and preprocessing, so nothing was written. Export this "
                          "model into a new OUT folder")


def _missing_folders(path: pathlib.Path) -> list[pathlib.Path]:
    """``path`` and its parents that do not exist yet (deepest first)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _undo(out: pathlib.Path, created: list[pathlib.Path], marked: bool) -> None:
    """After a failed export: remove the marker if this export added it, and the folders it
    created if they are empty again."""
    if not marked:
        try:
            remove(out / EXPORT_MARKER)
            if out in created:  # a folder this export made: its manifest goes too
                discard(out / MANIFEST)
        except OSError:
            pass
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def verify_serving(path, model: keras.Model, classes, batch: int = 4, seed: int = 0,
                   mode: str | None = None) -> dict:
    """Reload ``path`` with ``tf.saved_model.load`` and compare its signature with ``model``
    (labels by ``mode``, the label mode of the export's rule)."""
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
                                       probabilities_to_labels(got, classes, mode)))
    if diff > TOLERANCE or not labels_equal:
        raise UserError(f"{path}: the reloaded SavedModel disagrees with the Keras model "
                         f"(max |difference| {diff:.3g}, labels equal: {labels_equal})")
    return {"max_abs_difference": diff, "labels_equal": labels_equal, "batch": batch}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
