"""The layout of a run folder, shared by the stages, the comparisons, ``iac predict`` and
``iac report``::

    runs/NAME/
      config.yaml, version.txt         resolved experiment config and code version
      models.json                      index: model name -> best .keras of that model (see below)
      stage1/                          best_model.keras, history.csv, summary.json, ...
      stage2/                          genotypes/epoch_XXX.json, arch/, history.csv, search_time.json
      stage3/                          the IAC U-Net (best_model.keras, savedmodel/, history.csv,
                                       summary.json); with a genotype-epoch sweep one sub-folder
                                       per epoch: stage3/epoch_025/, stage3/epoch_050/, ...
      compare/<method>/                each comparison (attention, residual_attention, nested,
                                       unet_continued, ...): best_model.keras, history.csv, summary.json
      evaluation/                      dice_per_case.csv (columns: case, class, unet, <method>...),
                                       stats.json, dice_table.md, plots

``models.json`` maps a model name (``unet``, ``iac``, ``iac_epoch_025``, ``attention``,
``unet_continued``, ...) to its best model file, relative to the run folder where it lies inside
it (else absolute, e.g. a user's pre-trained U-Net). ``iac`` is always the run's final IAC U-Net.
"""

from __future__ import annotations

import json
import os
import pathlib

from iac_tf.files import atomic_write_json

MODELS_INDEX = "models.json"


def _index_path(run_dir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(run_dir) / MODELS_INDEX


def model_paths(run_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Every registered model of a run, as absolute paths (empty if none is registered)."""
    run_dir = pathlib.Path(run_dir)
    path = _index_path(run_dir)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable model index ({exc})") from None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a JSON object of name -> model path")
    return {name: (run_dir / rel if not pathlib.Path(rel).is_absolute() else pathlib.Path(rel))
            for name, rel in entries.items()}


def register_model(run_dir: str | os.PathLike, name: str, model_path: str | os.PathLike) -> None:
    """Record ``name -> model_path`` in the run's ``models.json`` (atomic rewrite)."""
    run_dir = pathlib.Path(run_dir)
    model_path = pathlib.Path(model_path)
    try:
        rel = str(model_path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        rel = str(model_path.resolve())
    current = {k: str(v) for k, v in _raw(run_dir).items()}
    current[name] = rel
    atomic_write_json(_index_path(run_dir), current)


def _raw(run_dir: pathlib.Path) -> dict:
    path = _index_path(run_dir)
    if not path.exists():
        return {}
    return json.loads(path.read_text())
