"""Patient-level splits of Fig. 5, written to and reused from ``splits.json``.

``train_dt`` holds ``1 - val_fraction`` of the patients and ``val_dt`` the rest; the search
subsets ``train_search_dt`` and ``val_search_dt`` are two disjoint, equally numbered sets of
patients drawn from ``train_dt`` (``search_fraction`` of its patients each). A patient's cases
(ACDC ED/ES frames, BraTS time points) always share a split.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from iac_tf.data.config import SPLITS, DataError
from iac_tf.diskspace import disk_full_guard
from iac_tf.files import atomic_write_text

SPLITS_VERSION = 1


def split_patients(
    patients: Sequence[str], seed: int, val_fraction: float = 0.2, search_fraction: float = 0.5
) -> dict[str, list[str]]:
    """Deterministic patient split: ``{split: sorted patient ids}`` for the four :data:`SPLITS`.

    Raises:
        DataError: fewer than 2 patients (val_dt needs one, train_dt another) or too few to give
            each search subset at least one patient.
    """
    unique = sorted(set(patients))
    if len(unique) < 2:
        raise DataError(f"need at least 2 patients to split, got {len(unique)}")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    n_val = min(max(1, int(round(val_fraction * len(unique)))), len(unique) - 1)
    val, train = order[:n_val], order[n_val:]
    n_search = min(max(1, math.floor(search_fraction * len(train) + 1e-9)), len(train) // 2)
    if n_search < 1:
        raise DataError(
            f"train_dt has {len(train)} patient(s); the two search subsets need at least 2")
    return {
        "train_dt": sorted(train),
        "val_dt": sorted(val),
        "train_search_dt": sorted(train[:n_search]),
        "val_search_dt": sorted(train[n_search: 2 * n_search]),
    }


def make_splits(case_patients: Mapping[str, str], seed: int, val_fraction: float,
                search_fraction: float) -> dict:
    """The content of ``splits.json``: parameters, patients and case ids per split."""
    patients = split_patients(list(case_patients.values()), seed, val_fraction, search_fraction)
    cases = {name: sorted(c for c, p in case_patients.items() if p in set(ids))
             for name, ids in patients.items()}
    return {"version": SPLITS_VERSION, "seed": seed, "val_fraction": val_fraction,
            "search_fraction": search_fraction, "patients": patients, "cases": cases}


def load_or_make_splits(path: pathlib.Path, case_patients: Mapping[str, str], seed: int,
                        val_fraction: float, search_fraction: float) -> dict:
    """Reuse ``path`` when it was made for the same cases and parameters, else (re)write it."""
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: corrupt splits file ({exc}); delete it to rebuild") from exc
        same = (old.get("version") == SPLITS_VERSION and old.get("seed") == seed
                and old.get("val_fraction") == val_fraction
                and old.get("search_fraction") == search_fraction
                and sorted(c for s in ("train_dt", "val_dt") for c in old["cases"][s])
                == sorted(case_patients))
        if same:
            validate_splits(old, path)
            return old
    splits = make_splits(case_patients, seed, val_fraction, search_fraction)
    validate_splits(splits, path)
    with disk_full_guard(path.parent, "splits.json", "data.cache_dir", needed=4096):
        atomic_write_text(path, json.dumps(splits, indent=1) + "\n")  # removes its temp on error
    return splits


def validate_splits(splits: dict, where: pathlib.Path | str) -> None:
    """Check Fig. 5's invariants: no patient in both train_dt and val_dt, search subsets
    disjoint, inside train_dt and equally numbered."""
    p = {k: set(splits["patients"][k]) for k in SPLITS}
    problems = []
    if p["train_dt"] & p["val_dt"]:
        problems.append(f"patients in train_dt and val_dt: {sorted(p['train_dt'] & p['val_dt'])}")
    if p["train_search_dt"] & p["val_search_dt"]:
        problems.append("train_search_dt and val_search_dt overlap")
    if not (p["train_search_dt"] | p["val_search_dt"]) <= p["train_dt"]:
        problems.append("search subsets not inside train_dt")
    if len(p["train_search_dt"]) != len(p["val_search_dt"]):
        problems.append("search subsets of different sizes")
    if problems:
        raise DataError(f"{where}: invalid splits: {'; '.join(problems)}")
