"""A tiny run folder for the inference tests: nnU-Net fixture dataset + config.yaml + a tiny
base U-Net saved where Stage III puts its best model."""

from __future__ import annotations

import dataclasses
import pathlib

from iac_tf.config.data import DataConfig
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.run_records import write_resolved
from iac_tf.unets import build_unet
from iac_tf.run_layout import RunLayout
from tests.data.fixtures import write_nnunet

PATCH = 48  # > the fixture's 40 x 36 in-plane: one padded window per slice


def make_run(tmp_path: pathlib.Path, channels=("T2", "ADC"), patch: int = PATCH, seed: int = 0,
             **data_kwargs):
    """``(run_dir, dataset_dir, model)``; the model is saved as ``stage3/best_model.keras`` and
    registered as the run's ``iac`` model."""
    from iac_tf._keras import keras

    ds = write_nnunet(tmp_path / "data", channels=channels)
    data = DataConfig(format="nnunet", root=str(ds), cache_dir=str(tmp_path / "cache"),
                      patch_size=patch, **data_kwargs)
    cfg = dataclasses.replace(ExperimentConfig(data=data), name="run", output_dir=str(tmp_path))
    with RunLayout.of(cfg).lock():  # only the holder of a run's lock writes into it
        write_resolved(cfg)
    keras.utils.set_random_seed(seed)
    model = build_unet("base", input_shape=(patch, patch, len(channels)), classes=2,
                       base_filters=4)
    (cfg.run_dir / "stage3").mkdir(parents=True)
    model.save(cfg.run_dir / "stage3" / "best_model.keras")
    with RunLayout.of(cfg).lock():
        RunLayout.of(cfg).register_model("iac", cfg.run_dir / "stage3" / "best_model.keras")
    return cfg.run_dir, ds, model
