"""Stage III (paper Section IV-B.3, Algorithm 3): implant the discrete IAC of a searched genotype
into the frozen, trained U-Net and train the cells on ``train_dt``, validating on ``val_dt``
with the Stage I hyper-parameters (Adam 1e-3, batch 128, 200 epochs, Dice).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from iac_tf._keras import keras
from iac_tf.files import save_model
from iac_tf.training.seeding import DataSource
from iac_tf.training.stage1 import Stage1Config, TrainResult, train_model


@dataclasses.dataclass(frozen=True)
class Stage3Config(Stage1Config):
    """The ``stage3:`` section: every Stage I training key, plus

    Args:
        cell_channels: C of the discrete cell (as in the search).
        genotype: path of a genotype JSON to use; if unset, Stage II's genotype of
            ``genotype_epoch`` (default: the last search epoch) is used.
        genotype_epoch: which Stage II epoch's genotype to implant.
        export_savedmodel: also export the best model as a TensorFlow SavedModel.
    """

    cell_channels: int = 16
    genotype: str | None = None
    genotype_epoch: int | None = None
    export_savedmodel: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.cell_channels < 1:
            raise ValueError(f"cell_channels must be >= 1, got {self.cell_channels}")
        if self.genotype_epoch is not None and self.genotype_epoch < 1:
            raise ValueError(f"genotype_epoch must be >= 1, got {self.genotype_epoch}")


def build_iac_unet(unet: keras.Model, genotype, cell_channels: int = 16) -> keras.Model:
    """The trained ``unet`` (frozen) with a :class:`~iac_tf.genotype.DiscreteCell` of ``genotype``
    in every skip connection (each level its own weights)."""
    from iac_tf.implant import implant, module_name
    from iac_tf.genotype import DiscreteCell

    def make_module(level, up_shape, skip_shape):
        return DiscreteCell(
            genotype,
            out_channels=int(up_shape[-1]) + int(skip_shape[-1]),
            C=cell_channels,
            name=module_name("iac_cell", level),
        )

    return implant(unet, make_module, name=f"{unet.name}_iac")


def train_iac_unet(
    unet: keras.Model,
    genotype,
    train_data: DataSource,
    val_data: DataSource,
    cfg: Stage3Config,
    run_dir: str | os.PathLike,
    seed: int = 0,
) -> TrainResult:
    """Algorithm 3: build the IAC U-Net and train its cells; U-Net weights stay frozen."""
    run_dir = pathlib.Path(run_dir)
    model = build_iac_unet(unet, genotype, cfg.cell_channels)
    result = train_model(model, train_data, val_data, cfg, run_dir, seed=seed)
    if cfg.export_savedmodel:
        export_savedmodel(result.best_model_path, run_dir / "savedmodel")
    return result


def export_savedmodel(model_path: str | os.PathLike, export_dir: str | os.PathLike) -> pathlib.Path:
    """Export a saved ``.keras`` model as a TensorFlow SavedModel folder (written to a temp
    folder first, then moved into place)."""
    import iac_tf.search  # noqa: F401  (registers the cells for loading)
    import iac_tf.unets  # noqa: F401

    model = keras.models.load_model(str(model_path), compile=False)
    return save_model(model, export_dir, save_format="tf")
