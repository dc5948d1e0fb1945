"""The ``data:`` section of an experiment YAML (:class:`DataConfig`) and the names of the splits
(pure data: reading and checking the dataset itself is :mod:`iac_tf.data`)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

from iac_tf.config import ConfigError, from_dict, load_yaml

FORMATS = ("nnunet", "acdc", "brats", "kits", "amos", "npz")

#: The four splits of Fig. 5: train_dt / val_dt (80/20 by patient) and two equal, disjoint
#: search subsets drawn from train_dt.
SPLITS = ("train_dt", "val_dt", "train_search_dt", "val_search_dt")

#: The held-out split: the dataset's ``imagesTs``/``labelsTs`` or ``data.test_fraction`` of the
#: patients. Never cached as slices, never trained or selected on; scored on whole volumes only.
TEST_SPLIT = "test_dt"

#: The split on which every stage picks its best epoch (and on which Stage III's genotype
#: sweep picks its epoch): scores on it are in-sample.
SELECTION_SPLIT = "val_dt"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How a dataset is read, preprocessed to 2D slices, split and cached.

    Args:
        format: one of ``FORMATS``; the reader used for ``root``.
        root: the dataset folder as the user unpacked it (or the ``.npz`` file for ``npz``).
        cache_dir: where the HDF5 cache and ``splits.json`` go (relative: to the working dir).
        patch_size: side of the square 2D crops (the paper: 128).
        seed: seed of the patient-level split (and of the ``test_fraction`` hold-out).
        val_fraction: share of patients in ``val_dt`` (the paper: 0.2).
        search_fraction: share of ``train_dt`` patients in EACH of ``train_search_dt`` and
            ``val_search_dt`` (at most 0.5; the two subsets are disjoint).
        test_fraction: share of the patients held out as ``test_dt`` before the Fig. 5 splits
            are drawn (at least one patient when > 0; all cases of a patient together), chosen
            from ``seed``. Those cases are never cached, trained or selected on: ``iac run`` and
            ``iac evaluate`` score them as whole volumes only. Ignored (with a warning) when the
            dataset has ``imagesTs``/``labelsTs`` (nnU-Net layout): those cases are ``test_dt``.
            0 (the default): no hold-out, the splits of earlier versions. Not for ``npz``.
        empty_slice_fraction: share of the slices without any foreground that is kept (evenly
            spaced, no randomness); all slices with foreground are kept.
        crop: centre of the in-plane crop box, per volume: ``label`` (label bounding box,
            falling back to the body), ``body`` (non-background bounding box) or ``center``.
        zoom: in-plane resampling factor applied before cropping (0.5 halves a 512x512 CT);
            1.0 keeps the native grid. A voxel factor: the same for every volume, whatever its
            voxel size.
        spacing: target in-plane voxel size in mm, ``[x, y]`` or one number for both (nnU-Net's
            target spacing, MONAI's ``Spacingd``): each volume is resampled in-plane by its own
            header spacing / ``spacing`` (the axial slice thickness is kept). ``null`` (the
            default): no resampling by spacing. Give ``zoom`` or ``spacing``, not both (with
            ``spacing`` leave ``zoom`` at 1.0). Not for ``npz``.
        label_mode: ``regions`` (the dataset's default overlapping regions, e.g. BraTS WT/TC/ET)
            or ``raw`` (one channel per label value).
        ct_window: fixed HU window ``[low, high]`` for CT; empty: per-volume percentiles.
        ct_percentiles: percentiles (of the whole volume) CT is clipped to when no window is set.
        mri_nonzero: z-score MRI over the non-zero voxels only; ``None``: the dataset's default
            (True for skull-stripped BraTS, False otherwise).
        reorient: reorient volumes to RAS before slicing; ``None``: the dataset's default
            (everything but ACDC, whose short-axis stacks are sliced along the stored last axis).
        on_error: ``raise`` stops at the first bad case; ``skip`` skips it and lists it in the
            summary.
        max_cases: read only the first N cases (sorted by id); 0 reads all (handy for tests).
        splits_file: nnU-Net v2's ``splits_final.json`` of the given U-Net (a JSON list of folds,
            each ``{"train": [case ids], "val": [case ids]}``); with ``fold``, that fold's
            ``train`` cases are the cases the U-Net was trained on. ``val_dt``,
            ``val_search_dt`` and ``test_dt`` then never hold a patient with one of them
            (:mod:`iac_tf.data.splits`). ``null``: not given.
        fold: the fold of ``splits_file`` the U-Net was trained on (required with it).
        unet_train_cases: the U-Net's training cases as a list of case ids, or the path of a
            text file (one id per line, ``#`` comments) or a JSON list; an alternative to
            ``splits_file`` with the same effect. ``null``: not given.
    """

    format: Literal["nnunet", "acdc", "brats", "kits", "amos", "npz"]
    root: str
    cache_dir: str = "cache"
    patch_size: int = 128
    seed: int = 0
    val_fraction: float = 0.2
    search_fraction: float = 0.5
    test_fraction: float = 0.0
    empty_slice_fraction: float = 0.1
    crop: Literal["label", "body", "center"] = "label"
    zoom: float = 1.0
    spacing: tuple[float, float] | float | None = None
    label_mode: Literal["regions", "raw"] = "regions"
    ct_window: tuple[float, ...] = ()
    ct_percentiles: tuple[float, float] = (0.5, 99.5)
    mri_nonzero: bool | None = None
    reorient: bool | None = None
    on_error: Literal["raise", "skip"] = "raise"
    max_cases: int = 0
    splits_file: str | None = None
    fold: int | None = None
    unet_train_cases: tuple[str, ...] | str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.patch_size < 8:
            raise ValueError(f"patch_size must be >= 8, got {self.patch_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.search_fraction <= 0.5:
            raise ValueError(f"search_fraction must be in (0, 0.5], got {self.search_fraction}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"val_fraction + test_fraction must be < 1 (train_dt needs "
                             f"patients), got {self.val_fraction} + {self.test_fraction}")
        if self.test_fraction > 0 and self.format == "npz":
            raise ValueError("test_fraction must be 0 for npz: test_dt is scored on whole "
                             "volumes, which an npz dataset does not have")
        if not 0.0 <= self.empty_slice_fraction <= 1.0:
            raise ValueError(
                f"empty_slice_fraction must be in [0, 1], got {self.empty_slice_fraction}")
        if not 0.0 < self.zoom <= 4.0:
            raise ValueError(f"zoom must be in (0, 4], got {self.zoom}")
        if self.spacing is not None:
            self._check_spacing()
        if self.splits_file is not None and self.fold is None:
            raise ValueError(f"splits_file {self.splits_file!r} needs fold: the fold whose "
                             "'train' cases the U-Net was trained on")
        if self.fold is not None and self.splits_file is None:
            raise ValueError("fold is set but splits_file is not: give the splits_final.json "
                             "the fold belongs to")
        if self.fold is not None and self.fold < 0:
            raise ValueError(f"fold must be >= 0, got {self.fold}")
        if self.splits_file is not None and self.unet_train_cases is not None:
            raise ValueError("give splits_file (+ fold) or unet_train_cases, not both")
        if (self.splits_file is not None or self.unet_train_cases is not None) \
                and self.format == "npz":
            raise ValueError("splits_file / unet_train_cases need a NIfTI dataset (npz slices "
                             "are split as they are)")
        if isinstance(self.unet_train_cases, (list, tuple)):
            object.__setattr__(self, "unet_train_cases", tuple(self.unet_train_cases))
        if self.ct_window and (len(self.ct_window) != 2 or self.ct_window[0] >= self.ct_window[1]):
            raise ValueError(f"ct_window must be [low, high] with low < high, got {self.ct_window}")
        lo, hi = self.ct_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"ct_percentiles must satisfy 0 <= low < high <= 100, got {lo, hi}")
        if self.max_cases < 0:
            raise ValueError(f"max_cases must be >= 0, got {self.max_cases}")

    def _check_spacing(self) -> None:
        value = self.spacing
        pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
        if len(pair) != 2 or not all(0.0 < float(v) <= 100.0 for v in pair):
            raise ValueError(f"spacing must be a voxel size in mm in (0, 100], one number or "
                             f"[x, y], got {value!r}")
        object.__setattr__(self, "spacing", tuple(float(v) for v in pair))
        if self.zoom != 1.0:
            raise ValueError(f"give zoom (a voxel factor, {self.zoom}) or spacing (mm, "
                             f"{list(self.spacing)}), not both; with spacing leave zoom at 1.0")
        if self.format == "npz":
            raise ValueError("spacing needs volumes with a header spacing; npz slices are "
                             "cached as they are")

    @property
    def gives_unet_train_cases(self) -> bool:
        """The config says which cases the U-Net was trained on (``splits_file`` or
        ``unet_train_cases``)."""
        return self.splits_file is not None or self.unet_train_cases is not None

    def content_dict(self) -> dict:
        """The fields that change the cached slices (not the split or the cache location).

        ``test_fraction`` is not one of them: the cases it holds out are left out of the
        cache's file list, which the cache key hashes (so test_fraction 0 keeps the key of
        earlier versions); neither are the U-Net's training cases (they only move patients
        between splits and out of the cache with ``test_fraction``). ``spacing`` is one only
        when set, so a config without it keeps the key of earlier versions."""
        skip = {"cache_dir", "seed", "val_fraction", "search_fraction", "test_fraction",
                "on_error", "splits_file", "fold", "unet_train_cases"}
        if self.spacing is None:
            skip.add("spacing")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}


def resolve_paths(cfg: DataConfig) -> tuple[pathlib.Path, pathlib.Path]:
    """``(root, cache_dir)``; a relative ``cache_dir`` is relative to the working directory."""
    root = pathlib.Path(cfg.root).expanduser()
    cache_dir = pathlib.Path(cfg.cache_dir).expanduser()
    return root, (cache_dir if cache_dir.is_absolute() else pathlib.Path.cwd() / cache_dir)


def load_data_config(path) -> DataConfig:
    """The ``data:`` section of an experiment YAML as a :class:`DataConfig` (errors name the
    file and the key)."""
    raw = load_yaml(path)
    if "data" not in raw:
        raise ConfigError(f"{path}: no 'data:' section")
    try:
        return from_dict(DataConfig, raw["data"], "data")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
