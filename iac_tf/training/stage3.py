"""Stage III (paper Section IV-B.3, Algorithm 3): implant the discrete IAC of a searched genotype
into the frozen, trained U-Net and train the cells on ``train_dt``, validating on ``val_dt``
with the Stage I hyper-parameters (Adam 1e-3, batch 128, 200 epochs, Dice).

``implant_mode: residual`` (not in the paper) starts from the U-Net itself instead of a
randomly initialised cell; see :mod:`iac_tf.implant.residual`.
"""

from __future__ import annotations

import os
import pathlib

from iac_tf._keras import keras
from iac_tf.comparisons import build_comparison_unet
from iac_tf.files import save_model
from iac_tf.config.stages import Stage3Config, TrainingSettings
from iac_tf.genotype import DiscreteCell
from iac_tf.implant import DiscreteModule, find_skip_connections, implant, module_name, residual
from iac_tf.models import load_unet
from iac_tf.run_layout import SAVEDMODEL
from iac_tf.training.seeding import DataSource
from iac_tf.training.fit import TrainResult, train_model


def build_iac_unet(unet: keras.Model, genotype, cell_channels: int = 16,
                   implant_mode: str = "replace", residual_projection: str = "auto",
                   fuse_output_conv: bool = True, fuse_upsampling: bool = True) -> keras.Model:
    """The trained ``unet`` (frozen) with a :class:`~iac_tf.genotype.DiscreteCell` of ``genotype``
    in every skip connection (each level its own weights); ``implant_mode="residual"`` wraps
    each cell with :func:`iac_tf.implant.residual` (the model then equals ``unet`` at init).

    In ``replace`` mode each cell absorbs the nearest upsampling before it and the frozen
    convolution after it where they fit (`iac_tf.implant.DiscreteModule`; ``fuse_*`` False
    keeps them in the U-Net): the same function, fewer operations."""
    def make_cell(level, up_shape, skip_shape):
        return DiscreteCell(
            genotype,
            out_channels=int(up_shape[-1]) + int(skip_shape[-1]),
            C=cell_channels,
            name=module_name("iac_cell", level),
        )

    if implant_mode == "residual":
        make_module = residual(make_cell, find_skip_connections(unet), residual_projection)
    elif implant_mode == "replace":
        def make_module(level, up_shape, skip_shape):
            return DiscreteModule(make_cell(level, up_shape, skip_shape),
                                  fuse_upsampling=fuse_upsampling, fuse_output_conv=fuse_output_conv)
    else:
        raise ValueError(f"implant_mode must be 'replace' or 'residual', got {implant_mode!r}")
    return implant(unet, make_module, name=f"{unet.name}_iac")


def train_iac_unet(
    unet: keras.Model,
    genotype,
    train_data: DataSource,
    val_data: DataSource,
    cfg: Stage3Config,
    run_dir: str | os.PathLike,
    case_scorer=None,
    implant_mode: str | None = None,
    search_cell_channels: int = 16,
    seed: int = 0,
    rule=None,
) -> TrainResult:
    """Algorithm 3: build the IAC U-Net and train its cells; U-Net weights stay frozen.

    ``implant_mode`` overrides ``cfg.implant_mode``; ``search_cell_channels`` is C when
    ``cfg.cell_channels`` is unset; ``case_scorer`` and ``rule`` as in :func:`train_model`."""
    run_dir = pathlib.Path(run_dir)
    channels = cfg.cell_channels or search_cell_channels
    model = build_iac_unet(unet, genotype, channels, implant_mode or cfg.implant_mode,
                           cfg.residual_projection, cfg.fuse_output_conv, cfg.fuse_upsampling)
    result = train_model(model, train_data, val_data, cfg, run_dir, case_scorer=case_scorer,
                         seed=seed, rule=rule)
    if cfg.export_savedmodel:
        export_savedmodel(result.best_model_path, run_dir / SAVEDMODEL)
    return result


def train_comparison(
    unet: keras.Model,
    method: str,
    train_data: DataSource,
    val_data: DataSource,
    cfg: TrainingSettings,
    run_dir: str | os.PathLike,
    seed: int = 0,
    case_scorer=None,
    rule=None,
) -> TrainResult:
    """Train a comparison method (paper Section V-A) exactly like Stage III: its modules in the
    frozen ``unet``'s skip connections, Stage III's training settings, best epoch by
    ``cfg.monitor`` on val_dt (epoch 0 included with ``cfg.evaluate_initial``)."""
    model = build_comparison_unet(unet, method)
    return train_model(model, train_data, val_data, cfg, run_dir, seed=seed,
                       case_scorer=case_scorer, rule=rule)


def export_savedmodel(model_path: str | os.PathLike, export_dir: str | os.PathLike) -> pathlib.Path:
    """Export a saved ``.keras`` model as a TensorFlow SavedModel folder (written to a temp
    folder first, then moved into place)."""
    model = load_unet(model_path)
    return save_model(model, export_dir, save_format="tf")
