"""Patient-level splits of Fig. 5, written to and reused from ``splits.json``.

``train_dt`` holds ``1 - val_fraction`` of the patients and ``val_dt`` the rest; the search
subsets ``train_search_dt`` and ``val_search_dt`` are two disjoint, equally numbered sets of
patients drawn from ``train_dt`` (``search_fraction`` of its patients each). A patient's cases
(ACDC ED/ES frames, BraTS time points) always share a split.

A run may also have ``test_dt`` (:data:`~iac_tf.data.config.TEST_SPLIT`): the dataset's own
labelled test cases (nnU-Net ``imagesTs``/``labelsTs``) or ``test_fraction`` of the patients,
held out (:func:`hold_out_patients`) before the four splits are drawn from the rest. Its patients
and cases are recorded in ``splits.json`` next to the others (``patients["test_dt"]``,
``cases["test_dt"]``, ``test_fraction``, ``test_source``); without test cases the file is
exactly what earlier versions wrote.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from iac_tf.data.config import SPLITS, TEST_SPLIT, DataError
from iac_tf.diskspace import disk_full_guard
from iac_tf.files import atomic_write_text

SPLITS_VERSION = 1

#: Second entropy word of the hold-out's random generator, so the test patients are not the
#: head of the permutation that draws val_dt.
_TEST_STREAM = 1


def hold_out_patients(patients: Sequence[str], seed: int, fraction: float) -> list[str]:
    """The sorted patients held out as ``test_dt``: ``round(fraction * P)`` of them (at least
    one when ``fraction > 0``), drawn from ``seed``; ``[]`` for ``fraction == 0``. Depends only on
    the set of patients, the seed and the fraction (not on val_fraction or search_fraction).

    Raises:
        DataError: fewer than 3 patients would be left for train_dt and val_dt (val_dt needs one,
            the two search subsets of train_dt one each).
    """
    unique = sorted(set(patients))
    if fraction <= 0:
        return []
    n_test = max(1, int(round(fraction * len(unique))))
    if len(unique) - n_test < 3:
        raise DataError(
            f"data.test_fraction {fraction} holds out {n_test} of {len(unique)} patient(s), "
            f"leaving {len(unique) - n_test} for train_dt and val_dt; they need at least 3")
    order = np.random.default_rng([seed, _TEST_STREAM]).permutation(len(unique))
    return sorted(unique[i] for i in order[:n_test])


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
                search_fraction: float, test_patients: Mapping[str, str] | None = None,
                test_fraction: float = 0.0, test_source: str = "") -> dict:
    """The content of ``splits.json``: parameters, patients and case ids per split.

    ``case_patients`` (case -> patient) are split as in Fig. 5; ``test_patients`` (case ->
    patient, already held out) become ``test_dt`` as they are, recorded with ``test_fraction``
    and ``test_source`` (``"labelsTs"`` or ``"test_fraction"``). Without test cases the content
    has no test keys (the file of earlier versions)."""
    patients = split_patients(list(case_patients.values()), seed, val_fraction, search_fraction)
    cases = {name: sorted(c for c, p in case_patients.items() if p in set(ids))
             for name, ids in patients.items()}
    splits = {"version": SPLITS_VERSION, "seed": seed, "val_fraction": val_fraction,
              "search_fraction": search_fraction}
    if test_patients:
        patients[TEST_SPLIT] = sorted(set(test_patients.values()))
        cases[TEST_SPLIT] = sorted(test_patients)
        splits |= {"test_fraction": test_fraction, "test_source": test_source}
    return splits | {"patients": patients, "cases": cases}


def load_or_make_splits(path: pathlib.Path, case_patients: Mapping[str, str], seed: int,
                        val_fraction: float, search_fraction: float,
                        test_patients: Mapping[str, str] | None = None,
                        test_fraction: float = 0.0, test_source: str = "") -> dict:
    """Reuse ``path`` when it was made for the same cases (test cases included) and parameters,
    else (re)write it. A file without test keys matches a dataset without test cases."""
    test_patients = dict(test_patients or {})
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: corrupt splits file ({exc}); delete it to rebuild") from exc
        old_cases = old.get("cases") or {}
        same = (old.get("version") == SPLITS_VERSION and old.get("seed") == seed
                and old.get("val_fraction") == val_fraction
                and old.get("search_fraction") == search_fraction
                and sorted(c for s in ("train_dt", "val_dt") for c in old_cases.get(s, []))
                == sorted(case_patients)
                and sorted(old_cases.get(TEST_SPLIT, [])) == sorted(test_patients)
                and (not test_patients
                     or (old.get("test_fraction") == test_fraction
                         and old.get("test_source") == test_source)))
        if same:
            validate_splits(old, path)
            return old
    splits = make_splits(case_patients, seed, val_fraction, search_fraction, test_patients,
                         test_fraction, test_source)
    validate_splits(splits, path)
    with disk_full_guard(path.parent, "splits.json", "data.cache_dir", needed=4096):
        atomic_write_text(path, json.dumps(splits, indent=1) + "\n")  # removes its temp on error
    return splits


def validate_splits(splits: dict, where: pathlib.Path | str) -> None:
    """Check Fig. 5's invariants: no patient in both train_dt and val_dt, search subsets
    disjoint, inside train_dt and equally numbered; and no test_dt patient or case in any of
    the four."""
    p = {k: set(splits["patients"][k]) for k in SPLITS}
    problems = []
    test = set(splits["patients"].get(TEST_SPLIT, []))
    test_cases = set(splits.get("cases", {}).get(TEST_SPLIT, []))
    for k in SPLITS:
        if test & p[k]:
            problems.append(f"patients in {TEST_SPLIT} and {k}: {sorted(test & p[k])}")
        if test_cases & set(splits.get("cases", {}).get(k, [])):
            problems.append(f"cases in {TEST_SPLIT} and {k}")
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
