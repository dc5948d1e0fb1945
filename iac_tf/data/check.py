"""``check_dataset``: validate a dataset folder without preprocessing it (``iac data check``)."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from iac_tf.config.data import TEST_SPLIT, resolve_paths
from iac_tf.errors import DataError
from iac_tf.data.datasets import (DATASETS, detect_format, list_cases, list_test_cases,
                                  read_case, unlabelled_warning)
from iac_tf.data.prepare import axial_slices, case_lists, load_npz


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What :func:`check_dataset` found: one row per case, the classes, and the problems."""

    root: str
    format: str
    class_names: tuple[str, ...]
    rows: tuple[str, ...]
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{self.root}: format {self.format}, {len(self.rows)} case(s), "
                 f"classes {list(self.class_names)}"]
        lines += [f"  {r}" for r in self.rows]
        lines += [f"WARNING {w}" for w in self.warnings]
        lines += [f"PROBLEM {p}" for p in self.problems]
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def check_dataset(dataset_dir: str | pathlib.Path, format: str | None = None,
                  raise_on_error: bool = True) -> CheckReport:
    """Read every case of ``dataset_dir`` and check it (files, grids, labels, intensities);
    the dataset's own test cases (nnU-Net ``imagesTs``/``labelsTs``) too, marked ``test_dt``.

    Args:
        dataset_dir: the dataset folder (or ``.npz`` file).
        format: the layout; ``None`` guesses it from the folder.
        raise_on_error: raise :class:`DataError` listing every problem found (else return a
            report whose ``problems`` lists them).
    """
    root = pathlib.Path(dataset_dir).expanduser()
    if not root.exists():
        raise DataError(f"{root}: not found")
    format = format or detect_format(root)
    rows, problems, warnings, names = [], [], [], ()
    if format == "npz":
        try:
            images, masks, ids, npz_names = load_npz(root)
            rows.append(f"{len(images)} slices of {images.shape[1:]}, masks {masks.shape[1:]}, "
                        f"{len(set(ids))} case(s)")
            names = tuple(npz_names)
        except DataError as exc:
            problems.append(str(exc))
    else:
        spec = DATASETS.get(format)
        if spec is None:
            raise DataError(f"unknown dataset format {format!r}")
        test: set[str] = set()
        try:
            classes = spec.classes(root, "regions")
            names = classes.names
            cases = list_cases(format, root)
            try:
                test_cases = list_test_cases(format, root)
            except DataError as exc:
                problems.append(str(exc))
                test_cases = []
            test = {c.case_id for c in test_cases}
            cases += test_cases
            warnings += [w for w in [unlabelled_warning(format, root)] if w]
        except DataError as exc:
            problems.append(str(exc))
            cases = []
        for case in cases:
            try:
                image, label, affine = read_case(case, classes.allowed, spec.reorient)
            except DataError as exc:
                problems.append(str(exc))
                continue
            values = np.unique(label).tolist()
            mark = f" [{TEST_SPLIT}]" if case.case_id in test else ""
            rows.append(f"{case.case_id} (patient {case.patient_id}){mark}: {image.shape[:3]} "
                        f"x {image.shape[3]} ch {'/'.join(case.modalities)}, labels {values}")
    report = CheckReport(str(root), format, tuple(names), tuple(rows), tuple(problems),
                         tuple(warnings))
    if problems and raise_on_error:
        raise DataError(str(report))
    return report


@dataclasses.dataclass(frozen=True)
class DataShape:
    """What a U-Net must match: image channels, mask classes, slice side (and the classes'
    names and label values, when the dataset has them: a softmax U-Net needs exclusive ones)."""

    channels: int
    classes: int
    patch_size: int
    class_names: tuple[str, ...] = ()
    class_values: tuple[tuple[int, ...], ...] = ()


def data_shape(cfg, count_slices: bool = False) -> tuple[DataShape, int]:
    """Channels, classes and (``count_slices``: from the label headers) the number of axial
    slices of ``cfg.data``'s cached cases (``test_dt`` is not cached), without building the
    cache."""
    d = cfg.data
    root, _ = resolve_paths(d)
    if d.format == "npz":
        images, masks, _, names = load_npz(root)
        return DataShape(images.shape[-1], masks.shape[-1], d.patch_size, tuple(names)), len(images)
    spec = DATASETS[d.format]
    cases = list(case_lists(d, root).train)
    classes = spec.classes(root, d.label_mode)
    names = classes.names
    shape = DataShape(len(cases[0].image_paths), len(names), d.patch_size, tuple(names),
                      tuple(tuple(int(v) for v in vals) for vals in classes.values))
    if not count_slices:
        return shape, 0
    reorient = spec.reorient if d.reorient is None else d.reorient
    return shape, sum(axial_slices(c.label_path, reorient) for c in cases if c.label_path.is_file())
