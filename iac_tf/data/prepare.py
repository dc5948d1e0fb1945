"""``prepare_dataset``: read -> hold out test_dt -> preprocess -> HDF5 cache -> splits.json ->
PreparedDataset."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import logging

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from iac_tf.config.data import TEST_SPLIT, DataConfig, resolve_paths
from iac_tf.data import cache as cache_lib
from iac_tf.data.datasets import (DATASETS, Case, list_cases, list_test_cases, read_case,
                                  unlabelled_warning)
from iac_tf.diskspace import check_writable_folder
from iac_tf.errors import DataError, PrepareInterrupted
from iac_tf.files import remove
from iac_tf.locks import folder_lock
from iac_tf.data.pipeline import PreparedDataset
from iac_tf.data.preprocess import in_plane_spacing, preprocess_case, zoom_factors
from iac_tf.data.splits import hold_out_patients, load_or_make_splits
from iac_tf.data.unet_cases import UNetTrainCases, read_unet_train_cases, shown

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CaseLists:
    """The listed cases of a NIfTI dataset, parted before anything is read or cached.

    Attributes:
        train: the cases the slice cache holds (the four Fig. 5 splits are drawn from them).
        test: ``test_dt``: the dataset's ``labelsTs`` cases or the ``test_fraction`` hold-out.
        source: where ``test`` comes from: ``"labelsTs"``, ``"test_fraction"`` or ``""``.
        test_fraction: the fraction that made ``test`` (0 unless ``source`` is
            ``"test_fraction"``), as ``splits.json`` records it.
        warnings: e.g. ``test_fraction`` ignored because the dataset has ``labelsTs``.
        unet: the cases the given U-Net was trained on (``data.splits_file`` /
            ``data.unet_train_cases``), checked against the dataset; ``None``: not given.
        seen: the patients with a case in ``unet`` (kept out of val_dt, val_search_dt and
            test_dt).
    """

    train: tuple[Case, ...]
    test: tuple[Case, ...] = ()
    source: str = ""
    test_fraction: float = 0.0
    warnings: tuple[str, ...] = ()
    unet: UNetTrainCases | None = None
    seen: frozenset[str] = frozenset()

    def unet_train(self) -> dict | None:
        """The ``unet_train`` entry of ``splits.json`` (:func:`~iac_tf.data.splits.make_splits`),
        or ``None``."""
        if self.unet is None:
            return None
        return {"source": self.unet.source, "fold": self.unet.fold,
                "cases": list(self.unet.cases), "patients": sorted(self.seen)}


def case_lists(cfg: DataConfig, root: pathlib.Path | None = None) -> CaseLists:
    """The cases of ``cfg``'s NIfTI dataset, parted into the cached ones and ``test_dt``
    (``data.max_cases`` applies to each list): the dataset's ``imagesTs``/``labelsTs`` if it has
    labelled test cases, else ``data.test_fraction`` of the patients (:func:`hold_out_patients`,
    from ``data.seed``), else no test cases."""
    root = resolve_paths(cfg)[0] if root is None else root
    limit = cfg.max_cases or None
    every = list_cases(cfg.format, root)
    every_test = list_test_cases(cfg.format, root)
    cases, own = every[:limit], every_test[:limit]
    unet, seen = _unet_train_cases(cfg, root, every, every_test)
    more = {"unet": unet, "seen": seen}
    if own:
        warnings = ()
        if cfg.test_fraction > 0:
            warnings = (f"{root}: data.test_fraction {cfg.test_fraction} is ignored: the "
                        f"dataset's {len(own)} labelsTs case(s) are {TEST_SPLIT}",)
        leaked = sorted(c.case_id for c in own if c.patient_id in seen)
        if leaked:
            raise DataError(f"{unet.source}: the U-Net was trained on (patients of) "
                            f"{len(leaked)} {TEST_SPLIT} case(s) of labelsTs: {shown(leaked)}; "
                            f"{TEST_SPLIT} must hold cases it has not seen")
        return CaseLists(tuple(cases), tuple(own), "labelsTs", warnings=warnings, **more)
    if cfg.test_fraction > 0:
        held = set(hold_out_patients([c.patient_id for c in cases], cfg.seed, cfg.test_fraction,
                                     None if unet is None else sorted(seen),
                                     "" if unet is None else unet.source))
        return CaseLists(tuple(c for c in cases if c.patient_id not in held),
                         tuple(c for c in cases if c.patient_id in held), "test_fraction",
                         cfg.test_fraction, **more)
    return CaseLists(tuple(cases), **more)


def _unet_train_cases(cfg: DataConfig, root: pathlib.Path, every, every_test
                      ) -> tuple[UNetTrainCases | None, frozenset[str]]:
    """The U-Net's training cases of ``cfg`` checked against every listed case of the dataset
    (``data.max_cases`` aside, so a shortened dataset does not make ids unknown), and the
    patients they belong to."""
    unet = read_unet_train_cases(cfg)
    if unet is None:
        return None, frozenset()
    patient_of = {c.case_id: c.patient_id for c in (*every, *every_test)}
    unet.check_known(patient_of, root)
    return unet, frozenset(patient_of[c] for c in unet.cases)


def volume_cases(cfg: DataConfig) -> dict[str, Case]:
    """Every listed case of ``cfg``'s NIfTI dataset by id, ``test_dt``'s included (the cases a
    run's volumetric scores read)."""
    lists = case_lists(cfg)
    return {c.case_id: c for c in (*lists.train, *lists.test)}


def prepare_dataset(cfg: DataConfig, progress: bool = True) -> PreparedDataset:
    """Build (or reuse) the slice cache and ``splits.json`` of ``cfg``.

    ``test_dt`` cases (:func:`case_lists`) are left out of the cache and of the four Fig. 5
    splits; ``splits.json`` lists them. Temporaries of killed earlier builds are deleted first;
    a cache file that cannot be read (truncated) is rebuilt; images without a label are listed
    in ``prepared.warnings``.

    Raises:
        DataError: bad input, naming the file and the problem (with ``on_error: skip`` bad
            NIfTI cases are skipped instead and listed in :meth:`PreparedDataset.summary`).
        DiskFullError: the cache folder has not enough free space (the partial file is removed).
        PrepareInterrupted: Ctrl-C (the partial file is removed).
    """
    try:
        return _prepare(cfg, progress)
    except KeyboardInterrupt:
        raise PrepareInterrupted() from None


def _prepare(cfg: DataConfig, progress: bool) -> PreparedDataset:
    root, cache_dir = resolve_paths(cfg)
    name = root.stem if cfg.format == "npz" else root.name
    build = _build_npz if cfg.format == "npz" else _build_volumes
    for path in cache_lib.clean_stale_temporaries(cache_dir):
        _warn(f"removed {path} (left by a killed preparation)", progress)
    warnings = [] if cfg.format == "npz" else [w for w in [unlabelled_warning(cfg.format, root)]
                                               if root.is_dir() and w]
    for w in warnings:
        _warn(w, progress)
    lists = None if cfg.format == "npz" else case_lists(cfg, root)
    if lists is not None:
        for w in lists.warnings:
            _warn(w, progress)
        warnings += list(lists.warnings)
    cache_path = build(cfg, root, cache_dir, name, progress)
    try:
        meta = cache_lib.read_meta(cache_path)
    except cache_lib.CorruptCacheError as exc:
        _warn(f"{exc}; rebuilding it", progress)
        try:  # the file this tool wrote under that name, damaged since: it may go
            remove(cache_path, what="a slice cache file", replace_changed=True,
                   hint="Nothing was deleted; delete it by hand if it is a damaged cache, then "
                        "rerun")
        except OSError as err:
            raise DataError(f"{exc}; it cannot be deleted ({err.strerror}): delete it by hand "
                            "and rerun") from None
        cache_path = build(cfg, root, cache_dir, name, progress)
        meta = cache_lib.read_meta(cache_path)
    case_patients = dict(zip(meta["case_ids"], meta["patient_ids"]))
    test = _checked_test_cases(cfg, lists.test if lists else (), progress, warnings)
    root_tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    unet_train = lists.unet_train() if lists else None
    unet_tag = f"_unet{lists.unet.sha256[:8]}" if unet_train else ""
    splits_path = (cache_dir /
                   f"{cfg.format}_{name}_{root_tag}_seed{cfg.seed}{unet_tag}_splits.json")
    splits = load_or_make_splits(splits_path, case_patients, cfg.seed, cfg.val_fraction,
                                 cfg.search_fraction, {c.case_id: c.patient_id for c in test},
                                 lists.test_fraction if test else 0.0,
                                 lists.source if test else "", unet_train)
    prepared = PreparedDataset(cfg, cache_path, splits_path, meta, splits)
    prepared.warnings = warnings
    if cfg.format != "npz":
        classes = DATASETS[cfg.format].classes(root, cfg.label_mode)
        if list(classes.names) != prepared.class_names:
            raise DataError(f"{cache_path}: its classes {prepared.class_names} are not the "
                            f"dataset's {list(classes.names)} ({root}); prepare the data again "
                            "(delete the cache file)")
        prepared.class_values = tuple(tuple(int(v) for v in vals) for vals in classes.values)
    return prepared


def _checked_test_cases(cfg: DataConfig, cases, progress: bool, warnings: list[str]
                        ) -> list[Case]:
    """The test cases whose image and label files exist (they are read when they are scored,
    so a missing file is found here, before any training). A missing file raises a
    :class:`DataError` naming it; with ``on_error: skip`` the case is left out with a warning."""
    kept = []
    for case in cases:
        missing = [p for p in (*case.image_paths, case.label_path) if not p.is_file()]
        if not missing:
            kept.append(case)
            continue
        message = f"{missing[0]}: file of {TEST_SPLIT} case {case.case_id} not found"
        if cfg.on_error == "raise":
            raise DataError(message)
        warnings.append(f"{message}; the case is left out of {TEST_SPLIT}")
        _warn(warnings[-1], progress)
    return kept


def _warn(message: str, progress: bool) -> None:
    if progress:
        log.warning("%s", message)


def _check_cache_dir(cache_dir: pathlib.Path) -> None:
    """The cache folder exists (or can be made) and is writable, else a clear error."""
    check_writable_folder(cache_dir, "the slice cache", "data.cache_dir")


def axial_slices(path: pathlib.Path, reorient: bool) -> int:
    """Number of axial slices of a NIfTI file, from its header only (the axis that becomes
    the third after RAS reorientation, or the stored third axis)."""

    try:
        img = nib.load(str(path))
        shape = img.shape
        if len(shape) < 3:
            return 1
        if not reorient:
            return int(shape[2])
        axes = nib.io_orientation(img.affine)[:, 0]
        return int(shape[int(np.flatnonzero(axes == 2)[0])]) if 2 in axes else int(shape[2])
    except Exception:  # noqa: BLE001 - an estimate; the read reports the file properly
        return 0


def _tqdm(iterable, progress: bool, desc: str):

    return tqdm(iterable, desc=desc, disable=not progress, unit="case")


def cached_path(cfg: DataConfig) -> pathlib.Path:
    """Where the slice cache of ``cfg`` is (or will be) written; nothing is built."""
    root, cache_dir = resolve_paths(cfg)
    if cfg.format == "npz":
        return _npz_target(root, cache_dir, root.stem)[0]
    return _volume_target(cfg, root, cache_dir, root.name)[0]


def _volume_target(cfg, root, cache_dir, name):
    """``(cache path, key, cases)`` of a NIfTI dataset: the key hashes the content config and
    every cached case's file path, size and modification time (``test_dt`` cases are not
    cached, so holding out other patients gives another cache)."""
    cases = list(case_lists(cfg, root).train)
    files = [p for c in cases for p in (*c.image_paths, c.label_path) if p.is_file()]
    key = cache_lib.cache_key(cfg.content_dict() | {"root": None},
                              cache_lib.file_fingerprints(files, root))
    return cache_dir / f"{cfg.format}_{name}_{key[:12]}.h5", key, cases


def _npz_target(root, cache_dir, name):
    key = cache_lib.cache_key({"format": "npz"}, cache_lib.file_fingerprints(
        [root] if root.is_file() else [], root.parent))
    return cache_dir / f"npz_{name}_{key[:12]}.h5", key


def _build_volumes(cfg, root, cache_dir, name, progress) -> pathlib.Path:
    spec = DATASETS[cfg.format]
    path, key, cases = _volume_target(cfg, root, cache_dir, name)
    classes = spec.classes(root, cfg.label_mode)
    if path.is_file():
        return path
    _check_cache_dir(cache_dir)
    with folder_lock(cache_dir / f".{path.name}.lock", f"the slice cache {path}"):
        if path.is_file():  # built by the process that held the lock before us
            return path
        return _write_volumes(cfg, root, name, progress, spec, cases, classes, key, path)


def _write_volumes(cfg, root, name, progress, spec, cases, classes, key, path) -> pathlib.Path:
    reorient = spec.reorient if cfg.reorient is None else cfg.reorient
    nonzero = spec.mri_nonzero if cfg.mri_nonzero is None else cfg.mri_nonzero
    skipped: list[str] = []
    channels = len(cases[0].image_paths)
    expected = sum(axial_slices(c.label_path, reorient) for c in cases if c.label_path.is_file())
    with cache_lib.CacheWriter(path, cfg.patch_size, channels, len(classes.names),
                               expected_slices=expected) as writer:
        for case in _tqdm(cases, progress, f"preprocessing {name}"):
            try:
                if len(case.image_paths) != channels:
                    raise DataError(f"{case.case_id}: {len(case.image_paths)} channels, "
                                    f"the dataset has {channels}")
                image, label, affine = read_case(case, classes.allowed, reorient)
            except DataError as exc:
                if cfg.on_error == "raise":
                    raise
                skipped.append(f"{case.case_id}: {exc}")
                continue
            factors = zoom_factors(cfg.zoom, cfg.spacing, in_plane_spacing(affine))
            images, masks, slices = preprocess_case(
                image, label, classes.values, case.modalities, patch_size=cfg.patch_size,
                crop=cfg.crop, zoom=factors, empty_slice_fraction=cfg.empty_slice_fraction,
                ct_window=cfg.ct_window, ct_percentiles=cfg.ct_percentiles, mri_nonzero=nonzero)
            writer.append(case.case_id, case.patient_id, images, masks, slices)
        if not writer.case_ids:
            raise DataError(f"{root}: every case was skipped: {skipped}")
        writer.close(key, list(classes.names), skipped, cfg.content_dict())
    return path


def load_npz(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(images, masks, case_ids, class_names)`` of an ``npz`` dataset, validated.

    Optional arrays: ``case_ids`` (S,) (else each slice is its own case) and ``class_names`` (N,).
    """
    if not path.is_file():
        raise DataError(f"{path}: npz file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    for key in ("images", "masks"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (has {sorted(arrays)})")
        if arrays[key].ndim != 4:
            raise DataError(f"{path}: {key!r} must be (S, H, W, C), got {arrays[key].shape}")
    images, masks = arrays["images"], arrays["masks"]
    if images.shape[:3] != masks.shape[:3]:
        raise DataError(f"{path}: images {images.shape} and masks {masks.shape} differ in (S,H,W)")
    if not np.all(np.isfinite(images)):
        raise DataError(f"{path}: 'images' contains NaN or infinite values")
    if not np.isin(masks, (0, 1)).all():
        raise DataError(f"{path}: 'masks' must be binary (0/1)")
    if "case_ids" in arrays:
        ids = [str(c) for c in arrays["case_ids"]]
        if len(ids) != len(images):
            raise DataError(f"{path}: {len(ids)} case_ids for {len(images)} slices")
    else:
        ids = [f"slice{i:06d}" for i in range(len(images))]
    default = [f"class{k}" for k in range(masks.shape[-1])]
    names = [str(n) for n in arrays.get("class_names", default)]
    if len(names) != masks.shape[-1]:
        raise DataError(f"{path}: {len(names)} class_names for {masks.shape[-1]} mask channels")
    return images.astype(np.float32), masks.astype(np.uint8), ids, names


def _build_npz(cfg, root, cache_dir, name, progress) -> pathlib.Path:
    path, key = _npz_target(root, cache_dir, name)
    if path.is_file():
        return path
    images, masks, ids, names = load_npz(root)
    order: dict[str, list[int]] = {}
    for i, case in enumerate(ids):
        order.setdefault(case, []).append(i)
    _check_cache_dir(cache_dir)
    with folder_lock(cache_dir / f".{path.name}.lock", f"the slice cache {path}"):
        if not path.is_file():  # else built by the process that held the lock before us
            _write_npz(path, images, masks, order, names, key, root, name, progress)
    return path


def _write_npz(path, images, masks, order, names, key, root, name, progress) -> None:
    with cache_lib.CacheWriter(path, images.shape[1], images.shape[-1], masks.shape[-1],
                               expected_slices=len(images)) as w:
        if images.shape[1] != images.shape[2]:
            raise DataError(f"{root}: slices must be square, got {images.shape[1:3]}")
        for case, idx in _tqdm(order.items(), progress, f"caching {name}"):
            w.append(case, case, images[idx], masks[idx], np.arange(len(idx)))
        w.close(key, names, [], {"format": "npz"})
