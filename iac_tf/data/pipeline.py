"""``PreparedDataset``: the four splits of a cached dataset as arrays or ``tf.data`` pipelines,
and the ids of its ``test_dt`` cases (never cached: they are scored on whole volumes only).

TensorFlow is imported only inside :meth:`PreparedDataset.dataset`, so reading and
preprocessing stay pure NumPy.
"""

from __future__ import annotations

import pathlib

import h5py
import numpy as np

from iac_tf.config.data import SPLITS, TEST_SPLIT, DataConfig
from iac_tf.errors import DataError

#: Splits up to this size are read into memory once; larger ones are read from HDF5 per batch.
IN_MEMORY_BYTES = 2 * 1024**3


class PreparedDataset:
    """A cached, split dataset (returned by :func:`iac_tf.data.prepare_dataset`).

    Attributes:
        config: the :class:`DataConfig`.
        cache_path, splits_path: the HDF5 cache and ``splits.json``.
        num_classes, class_names, in_channels, patch_size: mask channels, their names, image
            channels and the slice side.
        class_values: the label values of each mask channel (the dataset's classes; their
            overlap gives the label mode of the decision rule,
            :class:`iac_tf.labels.LabelRule`); one value per channel (``1..N``,
            classes that exclude each other) for ``npz`` datasets.
        case_ids: every cached case; ``skipped``: ``"case: reason"`` for cases left out.
        splits: the content of ``splits.json`` (patients and case ids per split).
        test_cases: the ``test_dt`` case ids (``[]``: the run has no test split); their volumes
            are not in the cache.
    """

    def __init__(self, config: DataConfig, cache_path: pathlib.Path,
                 splits_path: pathlib.Path, meta: dict, splits: dict):
        self.config = config
        self.cache_path = pathlib.Path(cache_path)
        self.splits_path = pathlib.Path(splits_path)
        self.splits = splits
        self.test_cases: list[str] = list(splits.get("cases", {}).get(TEST_SPLIT, []))
        self.class_names: list[str] = list(meta["class_names"])
        self.num_classes = len(self.class_names)
        self.class_values: tuple[tuple[int, ...], ...] = tuple(
            (k + 1,) for k in range(self.num_classes))  # set by prepare_dataset for NIfTI data
        self.in_channels: int = meta["in_channels"]
        self.case_ids: list[str] = list(meta["case_ids"])
        self.patient_ids: list[str] = list(meta["patient_ids"])
        self.skipped: list[str] = list(meta.get("skipped", []))
        self.warnings: list[str] = []  # e.g. images without a label (set by prepare_dataset)
        self._case_index = np.asarray(meta["case_index"])
        self._class_voxels = np.asarray(meta["class_voxels"])
        with self._h5() as f:
            self.patch_size = int(f["images"].shape[1])
        self._memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _h5(self):

        return h5py.File(self.cache_path, "r")

    def indices(self, split: str) -> np.ndarray:
        """Sorted slice indices (rows of the cache) of ``split``."""
        if split == TEST_SPLIT:
            raise DataError(f"{TEST_SPLIT} is not in the slice cache: it is scored on whole "
                            f"volumes only (its cases: prepared.test_cases)")
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; splits are {SPLITS}")
        wanted = set(self.splits["cases"][split])
        case_numbers = [i for i, c in enumerate(self.case_ids) if c in wanted]
        return np.flatnonzero(np.isin(self._case_index, case_numbers))

    def num_slices(self, split: str) -> int:
        return len(self.indices(split))

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(images (S,H,W,C) float32, masks (S,H,W,N) float32, case id per slice)``."""
        idx = self.indices(split)
        with self._h5() as f:
            images, masks = (
                (f["images"][idx], f["masks"][idx]) if len(idx) else
                (np.zeros((0, *f["images"].shape[1:]), np.float32),
                 np.zeros((0, *f["masks"].shape[1:]), np.uint8)))
        return (images.astype(np.float32, copy=False), masks.astype(np.float32),
                [self.case_ids[i] for i in self._case_index[idx]])

    def _source(self, split: str):
        """A function ``rows -> (images, masks)`` over positions 0..S-1 of ``split``."""
        idx = self.indices(split)
        row_bytes = 4 * self.patch_size**2 * (self.in_channels + self.num_classes)
        if len(idx) * row_bytes <= IN_MEMORY_BYTES:
            if split not in self._memory:
                images, masks, _ = self.arrays(split)
                self._memory[split] = (images, masks)
            images, masks = self._memory[split]
            return lambda rows: (images[rows], masks[rows])
        f = self._h5()

        def read(rows):
            # one chunk read per row: far faster than h5py fancy indexing (6x measured)
            chosen = idx[rows]
            return (np.stack([f["images"][i] for i in chosen]).astype(np.float32),
                    np.stack([f["masks"][i] for i in chosen]).astype(np.float32))
        return read

    def dataset(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_remainder: bool = False, repeat: bool = False):
        """``tf.data.Dataset`` of ``(images (B,H,W,C), masks (B,H,W,N))`` float32, prefetched.

        With ``shuffle`` the slice order is a permutation drawn from ``seed`` and redrawn each
        epoch (each new iteration, or each pass with ``repeat``), the same sequence in every run.
        """
        from iac_tf._keras import tf  # noqa: PLC0415 - keeps iac_tf.data TensorFlow-free

        n = self.num_slices(split)
        if n == 0:
            raise DataError(f"{self.cache_path}: split {split!r} has no slices")
        read = self._source(split)
        p, c, k = self.patch_size, self.in_channels, self.num_classes
        b = batch_size if drop_remainder else None

        def load(rows):
            images, masks = tf.numpy_function(
                lambda r: read(np.asarray(r, np.int64)), [rows], (tf.float32, tf.float32),
                stateful=False)
            images.set_shape((b, p, p, c))
            masks.set_shape((b, p, p, k))
            return images, masks

        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def summary(self) -> str:
        """Cases, patients and slices per split, and class frequencies (``iac data prepare``)."""
        lines = [f"cache:  {self.cache_path}", f"splits: {self.splits_path}",
                 f"cases: {len(self.case_ids)}  patients: {len(set(self.patient_ids))}  "
                 f"slices: {len(self._case_index)}  image channels: {self.in_channels}  "
                 f"classes: {self.num_classes}  patch: {self.patch_size}x{self.patch_size}"]
        header = f"{'split':<16}{'patients':>9}{'cases':>7}{'slices':>8}  " + "  ".join(
            f"{n}: fg% / slices%" for n in self.class_names)
        lines.append(header)
        for split in SPLITS:
            idx = self.indices(split)
            vox = self._class_voxels[idx]
            cells = []
            for k in range(self.num_classes):
                fg = 100.0 * vox[:, k].sum() / max(1, len(idx) * self.patch_size**2)
                present = 100.0 * (vox[:, k] > 0).mean() if len(idx) else 0.0
                cells.append(f"{fg:.2f} / {present:.0f}")
            lines.append(f"{split:<16}{len(self.splits['patients'][split]):>9}"
                         f"{len(self.splits['cases'][split]):>7}{len(idx):>8}  " + "  ".join(cells))
        if self.test_cases:
            source = self.splits.get("test_source", "")
            lines.append(f"{TEST_SPLIT:<16}{len(self.splits['patients'][TEST_SPLIT]):>9}"
                         f"{len(self.test_cases):>7}{'-':>8}  whole volumes only, not cached"
                         + (f" (from {source})" if source else ""))
        elif self.config.format != "npz":
            lines.append(f"no {TEST_SPLIT}: data.test_fraction is 0 and the dataset has no "
                         "imagesTs/labelsTs")
        unet = self.splits.get("unet_train")
        if unet is not None:
            lines.append(f"the U-Net's training cases: {len(unet['cases'])} case(s) of "
                         f"{len(unet['patients'])} patient(s) from {unet['source']}, all in "
                         f"train_dt; val_dt, val_search_dt and {TEST_SPLIT} hold none of them")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} case(s):")
            lines += [f"  {s}" for s in self.skipped]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"PreparedDataset({self.config.format!r}, cases={len(self.case_ids)}, "
                f"classes={self.class_names}, cache={str(self.cache_path)!r})")
