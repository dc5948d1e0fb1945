"""The training preprocessing of a run as a record (:class:`Preprocessing`): what training did to
every volume, as inference (:mod:`iac_tf.inference.volume`) and an export redo it.

The record is plain data (numbers, names, label values); a run keeps it in its
``data_record.json`` (:mod:`iac_tf.data.fingerprint`), so ``iac predict`` reads no
``dataset.json`` other than the run's. :meth:`Preprocessing.from_data_config` makes it from the
``data:`` section and the dataset it names; :meth:`Preprocessing.from_record` reads it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from iac_tf.config.data import DataConfig, resolve_paths
from iac_tf.data.datasets import DATASETS, list_cases, read_dataset_json
from iac_tf.data.preprocess import in_plane_spacing, zoom_factors
from iac_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The training preprocessing of a run, as inference needs it.

    Args:
        patch_size: the model's input side (``data.patch_size``).
        zoom: in-plane zoom factor (``data.zoom``).
        spacing: target in-plane spacing in mm (``data.spacing``), ``None``: ``zoom`` applies.
        reorient: reorient to RAS before slicing (``data.reorient`` or the dataset's default).
        nonzero: MRI z-score over non-zero voxels (``data.mri_nonzero`` or the dataset's default).
        ct_window, ct_percentiles: CT clipping (``data.ct_window``, ``data.ct_percentiles``).
        class_names, classes: the mask channels and their label values (``dataset.json``).
        modalities: per channel, ``"CT"`` or an MRI name, for cases the dataset does not know.
        case_modalities: per known case id (``dataset.json``'s ``case_modality`` and the
            dataset's own cases), its modalities.
    """

    patch_size: int
    zoom: float
    reorient: bool
    nonzero: bool
    ct_window: tuple[float, ...]
    ct_percentiles: tuple[float, float]
    class_names: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]
    modalities: tuple[str, ...]
    case_modalities: dict = dataclasses.field(default_factory=dict)
    spacing: tuple[float, float] | None = None

    def zoom_factors(self, affine: np.ndarray | None = None) -> tuple[float, float]:
        """The in-plane resampling factors of a volume with ``affine`` (after reorientation),
        as training computed them (:func:`iac_tf.data.preprocess.zoom_factors`)."""
        if self.spacing is not None and affine is None:
            raise ValueError(f"resampling to spacing {list(self.spacing)} mm needs the volume's "
                             "affine")
        return zoom_factors(self.zoom, self.spacing,
                            None if affine is None else in_plane_spacing(affine))

    def modalities_of(self, case_id: str) -> tuple[str, ...]:
        return tuple(self.case_modalities.get(case_id, self.modalities))

    @classmethod
    def from_record(cls, record: dict, modalities: Sequence[str] | None = None) -> Preprocessing:
        """The preprocessing a run recorded at training time (``data_record.json``'s
        ``preprocessing``), so no ``dataset.json`` is read again; ``modalities`` as in
        :meth:`from_data_config`."""
        prep = cls(
            patch_size=int(record["patch_size"]), zoom=float(record["zoom"]),
            reorient=bool(record["reorient"]), nonzero=bool(record["nonzero"]),
            ct_window=tuple(record["ct_window"]), ct_percentiles=tuple(record["ct_percentiles"]),
            class_names=tuple(record["class_names"]),
            classes=tuple(tuple(int(v) for v in values) for values in record["classes"]),
            modalities=tuple(record["modalities"]),
            case_modalities={k: tuple(v) for k, v in (record.get("case_modalities") or {}).items()},
            spacing=(None if record.get("spacing") is None
                     else tuple(float(v) for v in record["spacing"])))
        if not modalities:
            return prep
        return dataclasses.replace(prep, modalities=_override(modalities, len(prep.modalities)),
                                   case_modalities={})

    @classmethod
    def from_data_config(cls, cfg: DataConfig, modalities: Sequence[str] | None = None
                         ) -> Preprocessing:
        """Read classes and channel modalities from the dataset ``cfg.root`` names.

        ``modalities`` (e.g. ``["CT"]``) overrides the modality of every channel of every case.
        """
        if cfg.format == "npz":
            raise DataError(f"{cfg.root}: runs trained on an npz dataset have no volume "
                            "preprocessing to apply; predict needs a NIfTI-based dataset")
        root, _ = resolve_paths(cfg)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder of the run (data.root of its config) "
                            "not found; predict reads the classes and modalities from it")
        spec = DATASETS[cfg.format]
        classes = spec.classes(root, cfg.label_mode)
        cases = list_cases(cfg.format, root)
        known = {c.case_id: c.modalities for c in cases}
        default = cases[0].modalities
        if cfg.format == "nnunet":
            meta = read_dataset_json(root)
            channels = meta.get("channel_names") or meta.get("modality") or {"0": "MRI"}
            default = tuple("CT" if str(channels[i]).upper() == "CT" else str(channels[i])
                            for i in sorted(channels, key=int))
        if modalities:
            default, known = _override(modalities, len(default)), {}
        return cls(
            patch_size=cfg.patch_size, zoom=cfg.zoom,
            reorient=spec.reorient if cfg.reorient is None else cfg.reorient,
            nonzero=spec.mri_nonzero if cfg.mri_nonzero is None else cfg.mri_nonzero,
            ct_window=tuple(cfg.ct_window), ct_percentiles=tuple(cfg.ct_percentiles),
            class_names=tuple(classes.names), classes=tuple(classes.values),
            modalities=tuple(default), case_modalities=known, spacing=cfg.spacing)


def _override(modalities: Sequence[str], channels: int) -> tuple[str, ...]:
    """``--modality`` values for ``channels`` channels (one value: every channel)."""
    modalities = tuple("CT" if m.upper() == "CT" else m for m in modalities)
    if len(modalities) == 1:
        modalities = modalities * channels
    if len(modalities) != channels:
        raise DataError(f"--modality: {len(modalities)} values for {channels} channels")
    return modalities
