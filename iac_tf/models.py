"""Trained models as files: loading (every custom layer of the package registered first), what
a trained U-Net offers (:func:`inspect_unet`: input, output and its function -- one sigmoid per
class, or a softmax over background + classes --, skip connections), and the configured zoo
U-Net Stage I builds. Above :mod:`iac_tf.unets` (the zoo), :mod:`iac_tf.search`,
:mod:`iac_tf.genotype` and :mod:`iac_tf.implant`, whose layers it registers."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

import iac_tf.comparisons  # noqa: F401  (registers the comparison modules)
import iac_tf.genotype.discrete_cell  # noqa: F401  (registers DiscreteCell)
import iac_tf.implant.residual  # noqa: F401  (registers the residual implant)
import iac_tf.search  # noqa: F401  (registers SearchCell and its ops)
from iac_tf._keras import keras
from iac_tf.errors import UserError
from iac_tf.implant import NoSkipConnectionsError, find_skip_connections
from iac_tf.labels import OUTPUTS, label_mode
from iac_tf.unets import build_unet
from iac_tf.unets.layers import register_application_layers


def register_all_layers() -> None:
    """Register every custom Keras layer of iac_tf (zoo layers, search and discrete cells, the
    residual implant, the comparison modules): the one place loaders call before ``load_model``,
    so no loader can miss a module (an unregistered layer fails with ``'str' object is not
    callable``)."""
    register_application_layers()  # the package's own layers registered on import (above)


def load_unet(path: str | os.PathLike) -> keras.Model:
    """Load a model saved as ``.keras``, ``.h5`` or a SavedModel folder (tf_keras), uncompiled.

    Every custom layer of the package is registered first (:func:`register_all_layers`), so a
    U-Net, an IAC U-Net (either implant mode), a supernet or a comparison U-Net all load.
    """
    register_all_layers()
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: U-Net file not found")
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise UserError(f"{path}: could not load a Keras model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, keras.Model):
        raise UserError(f"{path}: loaded object is {type(model).__name__}, not a Keras model")
    return model


def build_configured_unet(cfg, channels: int, classes: int, encoder_weights="config"):
    """The zoo U-Net of ``cfg.unet`` for ``channels`` input channels and ``classes`` classes at
    ``data.patch_size`` (``encoder_weights``: the config's unless given): one sigmoid per class,
    or with ``unet.output: softmax`` a softmax over background + classes."""
    size = cfg.data.patch_size
    softmax = cfg.unet.output == "softmax"
    return build_unet(
        cfg.unet.backbone, input_shape=(size, size, channels), classes=classes + softmax,
        activation=cfg.unet.output,
        encoder_weights=cfg.unet.encoder_weights if encoder_weights == "config" else encoder_weights,
        decoder_filters=tuple(cfg.unet.decoder_filters) if cfg.unet.decoder_filters else None,
        **cfg.unet.options)


def stage1_params(cfg, shape) -> int:
    """Parameters of the U-Net Stage I would build for data of ``shape`` (a
    :class:`~iac_tf.data.check.DataShape`; 0 if it cannot be built here)."""
    if shape is None or cfg.unet.pretrained:
        return 0
    try:
        return int(build_configured_unet(cfg, shape.channels, shape.classes,
                                         encoder_weights=None).count_params())
    except Exception:  # noqa: BLE001 - the Stage I row reports configuration problems
        return 0


@dataclasses.dataclass(frozen=True)
class UNetInfo:
    """What the pre-flight learned about a trained U-Net file: ``classes`` the classes it
    predicts (its output channels for ``sigmoid``, one fewer for ``softmax``: channel 0 is the
    background), ``output`` its output function (:data:`~iac_tf.labels.OUTPUTS`)."""

    path: pathlib.Path
    in_channels: int | None
    classes: int | None
    skips: int
    params: int
    output: str = "sigmoid"
    out_channels: int | None = None

    def describe_output(self) -> str:
        """``sigmoid, one per class`` or ``softmax over background + N classes``."""
        if self.output == "softmax":
            return f"softmax over background + {self.classes} classes"
        return "sigmoid, one per class"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _output_activation(model) -> str:
    """Name of the function producing the model's (first) output: ``sigmoid``, ``softmax``,
    ``linear``, ... or ``""`` when it cannot be told (e.g. a revived SavedModel). Found as the
    last layer's ``activation`` (a convolution's ``activation="softmax"``, an
    ``Activation("softmax")`` layer), a ``Softmax`` layer, or a TensorFlow op layer
    (``tf.nn.softmax``, ``tf.sigmoid``). A softmax over another axis than the channels is
    ``softmax(axis=...)``."""
    try:
        layer = model.outputs[0]._keras_history.layer
        while isinstance(layer, keras.Model) and layer.outputs:
            layer = layer.outputs[0]._keras_history.layer
    except (AttributeError, IndexError, TypeError):
        return ""
    if isinstance(layer, keras.layers.Softmax):
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        return "softmax" if axis in (-1, 3, (-1,), (3,)) else f"softmax(axis={axis})"
    act = getattr(layer, "activation", None)
    if act is not None:
        return getattr(act, "__name__", str(act))
    symbol = str(getattr(layer, "symbol", "") or getattr(layer, "name", ""))
    for name in ("sigmoid", "softmax"):
        if name in symbol:
            return name
    return type(layer).__name__


def inspect_unet(path: str | pathlib.Path, patch_size: int) -> tuple[UNetInfo | None, list[str]]:
    """Load the U-Net file and check what needs no data: one 4D input, fixed input size ==
    ``patch_size``, a forward pass on one ``patch_size`` slice, a sigmoid or softmax output
    (a softmax needs at least 2 channels: background + classes), skip connections. Returns
    ``(info, problems)``; each problem names the file."""
    path = pathlib.Path(path)
    try:
        model = load_unet(path)
    except (OSError, UserError) as exc:
        return None, [str(exc)]
    problems = []
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        shapes = [tuple(t.shape) for t in model.inputs]
        return None, [f"{path}: expected one image input (batch, H, W, C), got inputs {shapes}"]
    _, h, w, c = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    classes = out_shape[-1] if len(out_shape) == 4 else None
    if len(out_shape) != 4:
        problems.append(f"{path}: expected a 4D output (batch, H, W, classes), got {out_shape}")
    for side in (h, w):
        if side is not None and side != patch_size:
            problems.append(f"{path}: the U-Net takes {h}x{w} inputs but data.patch_size is "
                            f"{patch_size}; set data.patch_size: {h} (or re-export the U-Net "
                            "with a flexible input size)")
            break
    if not problems and c is not None:
        try:
            pred = model(np.zeros((1, patch_size, patch_size, c), np.float32), training=False)
            got = tuple(pred.shape)
            if got[1:3] != (patch_size, patch_size):
                problems.append(f"{path}: a {patch_size}x{patch_size} slice gives a {got[1]}x"
                                f"{got[2]} output; data.patch_size must suit the U-Net's "
                                "downsampling (a multiple of 2^depth, e.g. 32)")
        except Exception as exc:  # noqa: BLE001 - any failure: the size does not suit the model
            problems.append(f"{path}: the U-Net does not run on {patch_size}x{patch_size}x{c} "
                            f"slices (data.patch_size must be a multiple of its total "
                            f"downsampling, e.g. 32): {_short(exc, 160)}")
    act = _output_activation(model)
    if act and act not in OUTPUTS:
        problems.append(f"{path}: the output activation is {act!r}; the IAC stages need a "
                        "sigmoid output (one sigmoid per class) or a softmax over the channels "
                        "(background + classes)")
    output = "softmax" if act == "softmax" else "sigmoid"
    if output == "softmax" and classes is not None and classes < 2:
        problems.append(f"{path}: a softmax over {classes} output channel: it needs the "
                        "background channel and one per class (at least 2)")
    try:
        skips = len(find_skip_connections(model))
    except NoSkipConnectionsError as exc:
        skips = 0
        problems.append(f"{path}: no skip connection found, so no place to implant a cell "
                        f"({str(exc).splitlines()[0]})")
    except Exception as exc:  # noqa: BLE001 - graph walk failed on an unusual model
        skips = 0
        problems.append(f"{path}: cannot analyse the U-Net graph for skip connections "
                        f"({_short(exc, 160)})")
    predicted = None if classes is None else classes - (output == "softmax")
    info = UNetInfo(path, c, predicted, skips, int(model.count_params()), output, classes)
    return info, problems


def match_data(info: UNetInfo, data, source: str) -> list[str]:
    """Input channels and output classes of the U-Net against the data (a
    :class:`~iac_tf.data.check.DataShape`; ``source`` names the dataset or cache in the
    message): ``N`` sigmoid channels or a softmax over ``N + 1`` for the data's ``N`` classes,
    and a softmax only for classes that exclude each other (not nested regions)."""
    problems = []
    if info.in_channels is not None and info.in_channels != data.channels:
        problems.append(f"{info.path}: the U-Net takes {info.in_channels} input channel(s) but "
                        f"the data ({source}) has {data.channels}")
    names = f" {list(data.class_names)}" if data.class_names else ""
    if info.output == "softmax" and info.out_channels is not None \
            and info.out_channels != data.classes + 1:
        problems.append(f"{info.path}: the U-Net's softmax has {info.out_channels} output "
                        f"channels but the data ({source}) has {data.classes} class(es){names}: "
                        f"a softmax needs {data.classes + 1} (background + classes)")
    elif info.output != "softmax" and info.classes is not None and info.classes != data.classes:
        problems.append(f"{info.path}: the U-Net outputs {info.classes} class(es) but the data "
                        f"({source}) has {data.classes}{names}")
    values = getattr(data, "class_values", ())
    if info.output == "softmax" and values and label_mode(values) == "regions":
        regions = ", ".join(f"{n}={list(v)}" for n, v in zip(data.class_names, values))
        problems.append(f"{info.path}: a softmax U-Net gives each voxel one class, but the "
                        f"classes of {source} are nested regions ({regions}: a voxel lies in "
                        "several); train it with one sigmoid per region, or give the dataset's "
                        "exclusive labels (data.label_mode: raw)")
    return problems
