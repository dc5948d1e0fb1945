"""The registry of dataset layouts: one table, one code path.

Each entry of :data:`DATASETS` knows how to list the labelled cases of a folder as the user
unpacked it (:class:`Case` records: files, patient, modality per channel) and which classes its
masks have. Everything after that (loading, checks, preprocessing, splits, cache) is shared.
Adding a dataset is adding a ``find`` function and an entry.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Callable

from iac_tf.data.nifti import load_case
from iac_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class Case:
    """One labelled volume. ``patient_id`` groups cases that must share a split."""

    case_id: str
    patient_id: str
    image_paths: tuple[pathlib.Path, ...]
    label_path: pathlib.Path
    modalities: tuple[str, ...]  # per channel: "CT" or an MRI sequence name


@dataclasses.dataclass(frozen=True)
class Classes:
    """Mask channels: ``names[k]`` is the union of label values ``values[k]``; ``allowed``
    is every label value the files may contain."""

    names: tuple[str, ...]
    values: tuple[tuple[int, ...], ...]
    allowed: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    find: Callable[[pathlib.Path], list[Case]]
    classes: Callable[[pathlib.Path, str], Classes]  # (root, label_mode) -> Classes
    layout: str  # for error messages
    reorient: bool = True
    mri_nonzero: bool = False
    #: the dataset's own labelled test cases (``test_dt``), or None if the layout has none
    find_test: Callable[[pathlib.Path], list[Case]] | None = None


def _fixed(raw: dict[str, int], regions: dict[str, tuple[int, ...]]):
    def classes(root: pathlib.Path, label_mode: str) -> Classes:
        table = regions if label_mode == "regions" else {k: (v,) for k, v in raw.items()}
        return Classes(tuple(table), tuple(table.values()), (0,) + tuple(raw.values()))
    return classes


def _dirs(root: pathlib.Path, pattern: str, depth: int = 3) -> list[pathlib.Path]:
    """Folders whose name fully matches ``pattern`` at most ``depth`` levels below ``root``."""
    found, level = [], [root]
    for _ in range(depth + 1):
        found += [p for p in level if p.is_dir() and re.fullmatch(pattern, p.name)]
        level = [c for p in level if p.is_dir() for c in sorted(p.iterdir()) if c.is_dir()]
    return sorted(set(found))


def read_dataset_json(root: pathlib.Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: dataset.json not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read dataset.json ({exc.strerror})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level must be a JSON object with a 'labels' mapping, "
                        f"got a {type(data).__name__}")
    if not isinstance(data.get("labels"), dict):
        raise DataError(f"{path}: needs a 'labels' mapping")
    return data


def _label_values(path: pathlib.Path, name: str, val) -> tuple[int, ...]:
    """One entry of ``labels``: an integer or a list of integers (a region), else an error
    naming the file and the label."""
    items = val if isinstance(val, list) else [val]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, str, float)) or (
                isinstance(v, float) and not v.is_integer()):
            raise DataError(f"{path}: label {name!r} must be an integer or a list of integers, "
                            f"got {val!r}")
        try:
            out.append(int(v))
        except ValueError:
            raise DataError(f"{path}: label {name!r} must be an integer or a list of integers, "
                            f"got {val!r}") from None
    if not out:
        raise DataError(f"{path}: label {name!r} has no values")
    return tuple(out)


def _json_classes(root: pathlib.Path, label_mode: str) -> Classes:
    """Classes from dataset.json: nnU-Net v2 ``{name: value | [values]}`` or the older
    ``{"value": name}`` (AMOS22, MSD); region lists become unions."""
    labels = read_dataset_json(root)["labels"]
    path = root / "dataset.json"
    pairs = []
    for key, val in labels.items():
        if isinstance(val, str) and key.lstrip("-").isdigit():
            key, val = val, int(key)
        pairs.append((str(key), _label_values(path, str(key), val)))
    allowed = sorted({v for _, vals in pairs for v in vals} | {0})
    fg = [(n, v) for n, v in pairs if v != (0,)]
    if label_mode == "raw":
        fg = [(n, v) for n, v in fg if len(v) == 1]
    if not fg:
        raise DataError(f"{root / 'dataset.json'}: no foreground labels")
    return Classes(tuple(n for n, _ in fg), tuple(v for _, v in fg), tuple(allowed))


def _nnunet_meta(root: pathlib.Path) -> tuple[str, dict]:
    meta = read_dataset_json(root)
    ending = meta.get("file_ending", ".nii.gz")
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "MRI"}
    if not isinstance(channels, dict) or not all(str(k).isdigit() for k in channels):
        raise DataError(f"{root / 'dataset.json'}: 'channel_names' must map channel numbers "
                        f"(\"0\", \"1\", ...) to modality names, got {channels!r}")
    if not isinstance(ending, str):
        raise DataError(f"{root / 'dataset.json'}: 'file_ending' must be a string, got {ending!r}")
    return ending, channels


def find_nnunet(root: pathlib.Path) -> list[Case]:
    """Every ``labelsTr`` case; a missing image channel is reported when the case is read
    (:func:`read_case`), so ``on_error: skip`` and ``iac data check`` can go on past it."""
    return _nnunet_cases(root, "Tr")


def find_nnunet_test(root: pathlib.Path) -> list[Case]:
    """Every ``labelsTs`` case (images in ``imagesTs``): the dataset's own ``test_dt``.
    ``imagesTs`` without ``labelsTs`` (nnU-Net's usual unlabelled test set) gives none."""
    return _nnunet_cases(root, "Ts")


def _nnunet_cases(root: pathlib.Path, part: str) -> list[Case]:
    meta = read_dataset_json(root)
    ending, channels = _nnunet_meta(root)
    per_case = meta.get("case_modality", {})
    cases = []
    for label in sorted((root / f"labels{part}").glob(f"*{ending}")):
        case = label.name[: -len(ending)]
        images = tuple(root / f"images{part}" / f"{case}_{int(i):04d}{ending}"
                       for i in sorted(channels, key=int))
        mods = tuple(per_case.get(case, channels[i]) for i in sorted(channels, key=int))
        cases.append(Case(case, case, images, label, tuple(_modality(m) for m in mods)))
    return cases


def _modality(name: str) -> str:
    return "CT" if str(name).upper() == "CT" else str(name)


def find_acdc(root: pathlib.Path) -> list[Case]:
    cases = []
    for folder in _dirs(root, r"patient\d{3}"):
        info = folder / "Info.cfg"
        if not info.is_file():
            raise DataError(f"{info}: Info.cfg not found")
        fields = dict(line.split(":", 1) for line in info.read_text().splitlines() if ":" in line)
        for phase in ("ED", "ES"):
            try:
                frame = int(fields[phase].strip())
            except (KeyError, ValueError) as exc:
                raise DataError(f"{info}: no valid '{phase}: <frame>' line") from exc
            stem = folder / f"{folder.name}_frame{frame:02d}"
            cases.append(Case(f"{folder.name}_{phase}", folder.name,
                              (pathlib.Path(f"{stem}.nii.gz"),),
                              pathlib.Path(f"{stem}_gt.nii.gz"), ("MRI",)))
    return cases


BRATS_SEQUENCES = ("t1n", "t1c", "t2w", "t2f")


def find_brats(root: pathlib.Path) -> list[Case]:
    cases = []
    for folder in _dirs(root, r"BraTS-GLI-\d{5}-\d{3}"):
        name = folder.name
        images = tuple(folder / f"{name}-{s}.nii.gz" for s in BRATS_SEQUENCES)
        cases.append(Case(name, name.rsplit("-", 1)[0], images, folder / f"{name}-seg.nii.gz",
                          BRATS_SEQUENCES))
    return cases


def find_kits(root: pathlib.Path) -> list[Case]:
    return [Case(f.name, f.name, (f / "imaging.nii.gz",), f / "segmentation.nii.gz", ("CT",))
            for f in _dirs(root, r"case_\d{5}") if (f / "imaging.nii.gz").exists()]


def find_amos(root: pathlib.Path) -> list[Case]:
    read_dataset_json(root)
    cases = []
    for split in ("Tr", "Va"):
        for label in sorted((root / f"labels{split}").glob("amos_*.nii.gz")):
            case = label.name[: -len(".nii.gz")]
            number = int(case.split("_")[1])
            cases.append(Case(case, case, (root / f"images{split}" / label.name,), label,
                              ("CT" if number < 500 else "MRI",)))
    return cases


#: format -> layout. ``npz`` is handled by :mod:`iac_tf.data.prepare` (slices as they are).
DATASETS: dict[str, DatasetSpec] = {
    "nnunet": DatasetSpec(find_nnunet, _json_classes,
                          "DatasetXXX_Name/dataset.json, imagesTr/CASE_0000.nii.gz, "
                          "labelsTr/CASE.nii.gz",
                          find_test=find_nnunet_test),
    "acdc": DatasetSpec(find_acdc, _fixed({"RV": 1, "MYO": 2, "LV": 3},
                                          {"RV": (1,), "MYO": (2,), "LV": (3,)}),
                        "[database/]training/patientNNN/ with Info.cfg, "
                        "patientNNN_frameXX[_gt].nii.gz",
                        reorient=False),
    "brats": DatasetSpec(find_brats, _fixed({"NETC": 1, "SNFH": 2, "ET": 3},
                                            {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}),
                         "BraTS-GLI-NNNNN-TTT/BraTS-GLI-NNNNN-TTT-"
                         "{t1n,t1c,t2w,t2f,seg}.nii.gz",
                         mri_nonzero=True),
    "kits": DatasetSpec(find_kits, _fixed({"kidney": 1, "tumor": 2, "cyst": 3},
                                          {"kidney_and_masses": (1, 2, 3), "masses": (2, 3),
                                           "tumor": (2,)}),
                        "case_NNNNN/imaging.nii.gz + segmentation.nii.gz"),
    "amos": DatasetSpec(find_amos, _json_classes,
                        "dataset.json, imagesTr|imagesVa/amos_NNNN.nii.gz, labelsTr|labelsVa/"),
}


def list_cases(format: str, root: pathlib.Path) -> list[Case]:
    """The labelled cases of ``root`` in the layout ``format``, sorted by id."""
    if format not in DATASETS:
        raise DataError(f"unknown dataset format {format!r}; known: {sorted(DATASETS) + ['npz']}")
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    cases = sorted(DATASETS[format].find(root), key=lambda c: c.case_id)
    if not cases:
        raise DataError(f"{root}: no labelled cases found (expected {DATASETS[format].layout})")
    return cases


def list_test_cases(format: str, root: pathlib.Path) -> list[Case]:
    """The dataset's own labelled test cases (nnU-Net ``imagesTs``/``labelsTs``), sorted by
    id; ``[]`` for layouts without them.

    Raises:
        DataError: a test case has the id of a training case (it would be scored on a case
            the models were trained or selected on).
    """
    spec = DATASETS.get(format)
    if spec is None or spec.find_test is None or not root.is_dir():
        return []
    cases = sorted(spec.find_test(root), key=lambda c: c.case_id)
    if cases:
        train = {c.case_id for c in spec.find(root)}
        both = [c.case_id for c in cases if c.case_id in train]
        if both:
            raise DataError(f"{cases[0].label_path.parent}: test case(s) {both[:5]} also have a "
                            f"training label (labelsTr); a test case must not be a training case")
    return cases


def detect_format(path: pathlib.Path) -> str:
    """Guess the layout of ``path`` (for ``iac data check``)."""
    if path.is_file() and path.suffix == ".npz":
        return "npz"
    if (path / "dataset.json").is_file():
        return "amos" if any((path / "labelsTr").glob("amos_*.nii.gz")) else "nnunet"
    for fmt, pattern in (("acdc", r"patient\d{3}"), ("brats", r"BraTS-GLI-\d{5}-\d{3}"),
                         ("kits", r"case_\d{5}")):
        if _dirs(path, pattern):
            return fmt
    raise DataError(f"{path}: cannot tell the dataset layout; pass --format (data.format in "
                    f"a config) as one of {sorted(DATASETS) + ['npz']}")


def unlabelled_cases(format: str, root: pathlib.Path) -> list[str]:
    """Cases with an image but no label (nnU-Net ``imagesTr`` / AMOS ``imagesTr|Va``): they
    cannot be used for training and are left out; the caller warns about them."""
    if format == "nnunet":
        ending, channels = _nnunet_meta(root)
        first = f"_{int(min(channels, key=int)):04d}{ending}"
        labelled = {p.name[: -len(ending)] for p in (root / "labelsTr").glob(f"*{ending}")}
        images = {p.name[: -len(first)] for p in (root / "imagesTr").glob(f"*{first}")}
        return sorted(images - labelled)
    if format == "amos":
        out = []
        for split in ("Tr", "Va"):
            labelled = {p.name for p in (root / f"labels{split}").glob("amos_*.nii.gz")}
            out += [p.name[: -len(".nii.gz")]
                    for p in sorted((root / f"images{split}").glob("amos_*.nii.gz"))
                    if p.name not in labelled]
        return sorted(out)
    return []


def unlabelled_warning(format: str, root: pathlib.Path) -> str:
    """``""`` or a one-line warning listing the images without a label."""
    missing = unlabelled_cases(format, root)
    if not missing:
        return ""
    shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20
                                       else "")
    return (f"{root}: {len(missing)} image(s) without a label are not used: {shown}")


def read_case(case: Case, allowed: tuple[int, ...], reorient: bool):
    """``load_case`` of one listed case, after checking that every file exists (a missing
    channel or label is named with its case)."""
    for i, path in enumerate(case.image_paths):
        if not path.is_file():
            raise DataError(f"{path}: missing image channel {i} ({case.modalities[i]}) of case "
                            f"{case.case_id}")
    if not case.label_path.is_file():
        raise DataError(f"{case.label_path}: label file not found (case {case.case_id})")
    return load_case(case.image_paths, case.label_path, allowed, reorient)
