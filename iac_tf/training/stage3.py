"""Stage III (paper Section IV-B.3, Algorithm 3): implant the discrete IAC of a searched genotype
into the frozen, trained U-Net and train the cells on ``train_dt``, validating on ``val_dt``
with the Stage I hyper-parameters (Adam 1e-3, batch 128, 200 epochs, Dice).

``implant_mode: residual`` (issue 11, not in the paper) starts from the U-Net itself instead of a
randomly initialised cell; see :mod:`iac_tf.implant.residual`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Literal

from iac_tf._keras import keras
from iac_tf.files import save_model
from iac_tf.run_layout import SAVEDMODEL
from iac_tf.training.seeding import DataSource
from iac_tf.training.stage1 import Stage1Config, TrainResult, train_model


@dataclasses.dataclass(frozen=True)
class Stage3Config(Stage1Config):
    """The ``stage3:`` section: every Stage I training key (``monitor``, ``patience``, ...; the
    paper trains Stage III "following the same hyper-parameters as in Stage I", Section IV-B.3),
    plus

    Args:
        evaluate_initial: score the implanted model before its first update as epoch 0 and let
            it be selected (our choice, default on: with ``residual`` the selected model is then
            never worse on ``val_dt`` than the U-Net by the ``monitor`` score).
        cell_channels: C of the discrete cell; ``null`` (default): the search's
            ``stage2.cell_channels`` (16, PC-DARTS' C; the paper does not give C).
        implant_mode: ``replace`` (paper, Section IV-B.3: the cell replaces the concatenation,
            weights initialised randomly) or ``residual`` (our choice, issue 11:
            ``concat(up, skip) + W_out * cell(up, skip)`` with the cell's output convolution
            initialised to zero, so the implanted model starts as the U-Net).
        residual_projection: ``W_out`` of the residual mode: ``auto`` / ``output_conv`` (zero the
            cell's own output 1x1 convolution, no extra parameter) or ``conv`` (an extra
            zero-initialised 1x1 convolution). See ``iac_tf.implant.residual``.
        extra_implant_modes: also train the IAC in these other modes (each into
            ``compare/iac_<mode>/``, registered and evaluated as ``iac_<mode>``); e.g.
            ``[replace]`` next to ``implant_mode: residual`` reports both modes.
        genotype: path of a genotype JSON to use; if unset, Stage II's genotype of
            ``genotype_epoch`` (default: the last search epoch) is used.
        genotype_epoch: which Stage II epoch's genotype to implant.
        genotype_epochs: the genotype-epoch sweep (paper Table VI, Fig. 6: ``[25, 50, 100, 150,
            200]``): one Stage III per listed Stage II epoch, into ``stage3/epoch_XXX/``; ``null``
            (default): one Stage III into ``stage3/``.
        select_genotype: with a sweep, which epoch's IAC U-Net is the run's final ``iac``:
            ``best_val`` (default; the best Stage III val_dt soft Dice, paper Section V-A) or
            ``last`` (the last listed epoch).
        export_savedmodel: also export the best model as a TensorFlow SavedModel.
    """

    evaluate_initial: bool = True
    cell_channels: int | None = None
    implant_mode: Literal["replace", "residual"] = "replace"
    residual_projection: Literal["auto", "output_conv", "conv"] = "auto"
    extra_implant_modes: tuple[str, ...] = ()
    genotype: str | None = None
    genotype_epoch: int | None = None
    genotype_epochs: tuple[int, ...] | None = None
    select_genotype: Literal["best_val", "last"] = "best_val"
    export_savedmodel: bool = True

    def __post_init__(self):
        super().__post_init__()
        for mode in self.extra_implant_modes:
            if mode not in ("replace", "residual") or mode == self.implant_mode:
                raise ValueError(f"extra_implant_modes: {mode!r} must be 'replace' or 'residual' "
                                 f"and differ from implant_mode ({self.implant_mode!r})")
        if self.cell_channels is not None and self.cell_channels < 1:
            raise ValueError(f"cell_channels must be >= 1, got {self.cell_channels}")
        if self.genotype_epoch is not None and self.genotype_epoch < 1:
            raise ValueError(f"genotype_epoch must be >= 1, got {self.genotype_epoch}")
        if self.genotype_epochs is not None:
            epochs = list(self.genotype_epochs)
            if not epochs or any(e < 1 for e in epochs) or len(set(epochs)) != len(epochs):
                raise ValueError(f"genotype_epochs must be distinct epochs >= 1, got {epochs}")
            if self.genotype is not None or self.genotype_epoch is not None:
                raise ValueError("genotype_epochs (a sweep) cannot be combined with genotype or "
                                 "genotype_epoch (one genotype); set only one of them")


def build_iac_unet(unet: keras.Model, genotype, cell_channels: int = 16,
                   implant_mode: str = "replace", residual_projection: str = "auto") -> keras.Model:
    """The trained ``unet`` (frozen) with a :class:`~iac_tf.genotype.DiscreteCell` of ``genotype``
    in every skip connection (each level its own weights); ``implant_mode="residual"`` wraps
    each cell with :func:`iac_tf.implant.residual` (the model then equals ``unet`` at init)."""
    from iac_tf.genotype import DiscreteCell
    from iac_tf.implant import find_skip_connections, implant, module_name, residual

    def make_module(level, up_shape, skip_shape):
        return DiscreteCell(
            genotype,
            out_channels=int(up_shape[-1]) + int(skip_shape[-1]),
            C=cell_channels,
            name=module_name("iac_cell", level),
        )

    if implant_mode == "residual":
        make_module = residual(make_module, find_skip_connections(unet), residual_projection)
    elif implant_mode != "replace":
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
) -> TrainResult:
    """Algorithm 3: build the IAC U-Net and train its cells; U-Net weights stay frozen.

    ``implant_mode`` overrides ``cfg.implant_mode``; ``search_cell_channels`` is C when
    ``cfg.cell_channels`` is unset; ``case_scorer`` as in :func:`train_model`."""
    run_dir = pathlib.Path(run_dir)
    channels = cfg.cell_channels or search_cell_channels
    model = build_iac_unet(unet, genotype, channels, implant_mode or cfg.implant_mode,
                           cfg.residual_projection)
    result = train_model(model, train_data, val_data, cfg, run_dir, case_scorer=case_scorer,
                         seed=seed)
    if cfg.export_savedmodel:
        export_savedmodel(result.best_model_path, run_dir / SAVEDMODEL)
    return result


def train_comparison(
    unet: keras.Model,
    method: str,
    train_data: DataSource,
    val_data: DataSource,
    cfg: Stage3Config,
    run_dir: str | os.PathLike,
    seed: int = 0,
    case_scorer=None,
) -> TrainResult:
    """Train a comparison method (paper Section V-A) exactly like Stage III: its modules in the
    frozen ``unet``'s skip connections, Stage III's training settings, best epoch by
    ``cfg.monitor`` on val_dt (epoch 0 included with ``cfg.evaluate_initial``)."""
    from iac_tf.comparisons import build_comparison_unet

    model = build_comparison_unet(unet, method)
    return train_model(model, train_data, val_data, cfg, run_dir, seed=seed,
                       case_scorer=case_scorer)


def export_savedmodel(model_path: str | os.PathLike, export_dir: str | os.PathLike) -> pathlib.Path:
    """Export a saved ``.keras`` model as a TensorFlow SavedModel folder (written to a temp
    folder first, then moved into place)."""
    from iac_tf.unets.loading import load_unet

    model = load_unet(model_path)
    return save_model(model, export_dir, save_format="tf")
