"""Which cases a given U-Net was trained on: nnU-Net v2's ``splits_final.json`` and a fold
(``data.splits_file`` + ``data.fold``), or a plain list (``data.unet_train_cases``: ids in the
YAML, or a text / JSON file).

A U-Net trained on every case of ``imagesTr`` would otherwise be improved and selected on
``val_dt`` cases it has seen. With this list the splits keep every patient with one of these
cases in ``train_dt`` (:func:`iac_tf.data.splits.split_patients`): ``val_dt``, ``val_search_dt``
and ``test_dt`` hold only patients the U-Net never saw. Ids must name cases of the dataset (an
unknown id is an error naming the file and the ids: usually another dataset's file or fold).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Iterable

from iac_tf.config.data import DataConfig
from iac_tf.errors import DataError

#: ids shown in an error message before "... (N more)"
SHOWN_IDS = 10


@dataclasses.dataclass(frozen=True)
class UNetTrainCases:
    """The cases a given U-Net was trained on.

    Attributes:
        source: where they come from, for messages and records (``splits_final.json (fold 0)``,
            a file path, or ``data.unet_train_cases``).
        cases: the case ids, sorted, unique.
        fold: the fold of a ``splits_final.json`` (``None`` for a plain list).
        fold_val: that fold's ``val`` cases (checked against the dataset too).
    """

    source: str
    cases: tuple[str, ...]
    fold: int | None = None
    fold_val: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        """Hash of the sorted ids: equal lists give equal hashes wherever the file lies."""
        return hashlib.sha256("\n".join(self.cases).encode()).hexdigest()

    def record(self) -> dict:
        """What the run's dataset record keeps (a rerun with other cases is detected by it)."""
        return {"source": self.source, "fold": self.fold, "count": len(self.cases),
                "sha256": self.sha256}

    def check_known(self, known: Iterable[str], root) -> None:
        """Raise a :class:`DataError` naming the source and the ids that are no case of the
        dataset at ``root`` (``known``: every listed case id, test cases included)."""
        known = set(known)
        unknown = sorted((set(self.cases) | set(self.fold_val)) - known)
        if unknown:
            raise DataError(f"{self.source}: {len(unknown)} case id(s) are not cases of the "
                            f"dataset {root}: {shown(unknown)}; is it the file (and fold) of "
                            f"this dataset?")


def shown(ids) -> str:
    ids = list(ids)
    more = f", ... ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else ""
    return ", ".join(map(str, ids[:SHOWN_IDS])) + more


def _read_json(path: pathlib.Path, key: str):
    if not path.is_file():
        raise DataError(f"{path}: file of {key} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {key} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {key} ({exc.strerror})") from None


def _ids(values, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip()
                                               for v in values):
        raise DataError(f"{where} must be a list of case ids (strings), got "
                        f"{str(values)[:80]}")
    return tuple(sorted({v.strip() for v in values}))


def _from_splits_file(path: pathlib.Path, fold: int) -> UNetTrainCases:
    folds = _read_json(path, "data.splits_file")
    if not isinstance(folds, list) or not folds or not all(isinstance(f, dict) for f in folds):
        raise DataError(f"{path}: data.splits_file must be nnU-Net's splits_final.json, a JSON "
                        "list of folds, each {\"train\": [case ids], \"val\": [case ids]}")
    if fold >= len(folds):
        raise DataError(f"{path}: data.fold {fold} does not exist; the file has {len(folds)} "
                        f"fold(s), 0 to {len(folds) - 1}")
    entry = folds[fold]
    if "train" not in entry:
        raise DataError(f"{path}: fold {fold} has no 'train' list (keys: {sorted(entry)})")
    where = f"{path}: fold {fold}"
    train = _ids(entry["train"], f"{where} 'train'")
    val = _ids(entry.get("val", []), f"{where} 'val'")
    if not train:
        raise DataError(f"{where} has an empty 'train' list")
    both = sorted(set(train) & set(val))
    if both:
        raise DataError(f"{where}: case(s) in both 'train' and 'val': {shown(both)}")
    return UNetTrainCases(f"{path} (fold {fold})", train, fold, val)


def _from_list_file(path: pathlib.Path) -> UNetTrainCases:
    """A JSON list of ids, or text with one id per line (blank lines and ``#`` comments
    ignored)."""
    if path.suffix.lower() == ".json":
        ids = _ids(_read_json(path, "data.unet_train_cases"), f"{path}: data.unet_train_cases")
    else:
        if not path.is_file():
            raise DataError(f"{path}: file of data.unet_train_cases not found")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read data.unet_train_cases ({exc})") from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        ids = tuple(sorted({line for line in lines if line}))
    if not ids:
        raise DataError(f"{path}: data.unet_train_cases lists no case")
    return UNetTrainCases(str(path), ids)


def read_unet_train_cases(cfg: DataConfig) -> UNetTrainCases | None:
    """The U-Net's training cases ``cfg`` gives (``None``: not given). Files are read relative
    to the working directory. Raises :class:`DataError` naming the file for a missing or
    malformed file, a fold that does not exist or an empty list (ids are checked against the
    dataset by :meth:`UNetTrainCases.check_known`)."""
    if cfg.splits_file is not None:
        return _from_splits_file(pathlib.Path(cfg.splits_file).expanduser(), int(cfg.fold))
    value = cfg.unet_train_cases
    if value is None:
        return None
    if isinstance(value, str):
        return _from_list_file(pathlib.Path(value).expanduser())
    ids = tuple(sorted({str(v).strip() for v in value if str(v).strip()}))
    if not ids:
        raise DataError("data.unet_train_cases: the list is empty; leave the key out when the "
                        "U-Net's training cases are unknown")
    return UNetTrainCases("data.unet_train_cases", ids)
