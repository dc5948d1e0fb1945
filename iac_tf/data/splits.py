"""Patient-level splits of Fig. 5, written to and reused from ``splits.json``.

``train_dt`` holds ``1 - val_fraction`` of the patients and ``val_dt`` the rest; the search
subsets ``train_search_dt`` and ``val_search_dt`` are two disjoint, equally numbered sets of
patients drawn from ``train_dt`` (``search_fraction`` of its patients each). A patient's cases
(ACDC ED/ES frames, BraTS time points) always share a split.

A run may also have ``test_dt`` (:data:`~iac_tf.config.data.TEST_SPLIT`): the dataset's own
labelled test cases (nnU-Net ``imagesTs``/``labelsTs``) or ``test_fraction`` of the patients,
held out (:func:`hold_out_patients`) before the four splits are drawn from the rest. Its patients
and cases are recorded in ``splits.json`` next to the others (``patients["test_dt"]``,
``cases["test_dt"]``, ``test_fraction``, ``test_source``); without test cases the file is
exactly what earlier versions wrote.

With the cases a given U-Net was trained on (:mod:`iac_tf.data.unet_cases`), a patient with one
of them is *seen*; the others are *held out*. Seen patients all go to ``train_dt``; ``test_dt``
(``test_fraction`` of the held-out patients, or ``labelsTs``, which must hold no seen patient),
``val_dt`` and ``val_search_dt`` are drawn from the held-out ones only: ``val_dt`` gets
:func:`held_out_val_share` of them (Fig. 5's proportion of ``val_dt`` to ``val_search_dt``), the
rest join ``train_dt`` and give ``val_search_dt`` its patients; ``train_search_dt`` is as many
other ``train_dt`` patients. ``splits.json`` records the list (``unet_train``: source, fold,
cases, seen patients). Without it: the splits above, unchanged.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from iac_tf.config.data import SPLITS, TEST_SPLIT
from iac_tf.diskspace import disk_full_guard
from iac_tf.errors import DataError
from iac_tf.files import atomic_write_text

SPLITS_VERSION = 1

#: Second entropy word of the hold-out's random generator, so the test patients are not the
#: head of the permutation that draws val_dt.
_TEST_STREAM = 1
#: ... and of the draw of train_search_dt when the U-Net's training cases are given.
_SEARCH_STREAM = 2


def hold_out_patients(patients: Sequence[str], seed: int, fraction: float,
                      seen: Sequence[str] | None = None, source: str = "") -> list[str]:
    """The sorted patients held out as ``test_dt``: ``round(fraction * P)`` of them (at least
    one when ``fraction > 0``), drawn from ``seed``; ``[]`` for ``fraction == 0``. Depends only on
    the set of patients, the seed and the fraction (not on val_fraction or search_fraction).
    With ``seen`` patients (the U-Net trained on one of their cases; ``source`` names the list)
    they are drawn from the others only, and ``P`` counts those others.

    Raises:
        DataError: fewer than 3 patients would be left for train_dt and val_dt (val_dt needs one,
            the two search subsets of train_dt one each); with ``seen``, fewer than 2 unseen
            patients for val_dt and val_search_dt.
    """
    seen_set = set(seen or ())
    unique = sorted(set(patients) - seen_set)
    if fraction <= 0:
        return []
    n_test = max(1, int(round(fraction * len(unique))))
    if seen is not None and len(unique) - n_test < 2:
        raise DataError(
            f"{source}: the U-Net was trained on cases of {len(set(patients) & seen_set)} of the "
            f"{len(set(patients))} patient(s); data.test_fraction {fraction} holds out {n_test} "
            f"of the {len(unique)} other(s) as {TEST_SPLIT}, leaving {len(unique) - n_test} for "
            f"val_dt and val_search_dt, which need at least 2 patients the U-Net has not seen. "
            f"Lower data.test_fraction or give a U-Net trained on fewer cases")
    if seen is None and len(unique) - n_test < 3:
        raise DataError(
            f"data.test_fraction {fraction} holds out {n_test} of {len(unique)} patient(s), "
            f"leaving {len(unique) - n_test} for train_dt and val_dt; they need at least 3")
    order = np.random.default_rng([seed, _TEST_STREAM]).permutation(len(unique))
    return sorted(unique[i] for i in order[:n_test])


def held_out_val_share(val_fraction: float, search_fraction: float) -> float:
    """The share of the held-out patients (those the U-Net was not trained on, test_dt aside)
    that goes to ``val_dt``; the others are for ``val_search_dt``. Fig. 5's sizes put
    ``val_fraction`` of the patients in val_dt and ``search_fraction * (1 - val_fraction)`` in
    val_search_dt; the held-out patients are divided in that proportion (1/3 to val_dt with the
    defaults 0.2 and 0.5)."""
    return val_fraction / (val_fraction + search_fraction * (1.0 - val_fraction))


def split_patients(
    patients: Sequence[str], seed: int, val_fraction: float = 0.2, search_fraction: float = 0.5,
    seen: Sequence[str] | None = None, source: str = "",
) -> dict[str, list[str]]:
    """Deterministic patient split: ``{split: sorted patient ids}`` for the four :data:`SPLITS`.

    ``seen``: the patients a given U-Net was trained on (``source`` names the list); they go
    to ``train_dt`` and never to ``val_dt`` or ``val_search_dt`` (see the module docstring).
    ``None``: the split of earlier versions.

    Raises:
        DataError: fewer than 2 patients (val_dt needs one, train_dt another) or too few to give
            each search subset at least one patient; with ``seen``, fewer than 2 patients the
            U-Net has not seen.
    """
    if seen is not None:
        return _split_held_out(patients, seed, val_fraction, search_fraction, seen, source)
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


def _split_held_out(patients, seed, val_fraction, search_fraction, seen, source):
    unique = sorted(set(patients))
    seen_here = sorted(set(seen) & set(unique))
    held = [p for p in unique if p not in set(seen_here)]
    if len(held) < 2:
        raise DataError(
            f"{source}: the U-Net was trained on cases of {len(seen_here)} of the {len(unique)} "
            f"patient(s) left for the splits; {len(held)} patient(s) it has not seen remain, "
            f"but val_dt and val_search_dt need at least 2 (one each). Give a U-Net trained on "
            f"fewer cases (another fold), or lower data.test_fraction")
    order = [held[i] for i in np.random.default_rng(seed).permutation(len(held))]
    share = held_out_val_share(val_fraction, search_fraction)
    n_val = min(max(1, int(round(share * len(held)))), len(held) - 1)
    val, rest = order[:n_val], order[n_val:]
    train = seen_here + rest
    n_search = min(max(1, math.floor(search_fraction * len(train) + 1e-9)), len(train) // 2,
                   len(rest))
    if n_search < 1:
        raise DataError(f"{source}: train_dt has {len(train)} patient(s); the two search subsets "
                        "need at least 2")
    val_search = rest[:n_search]
    others = sorted(set(train) - set(val_search))
    picks = np.random.default_rng([seed, _SEARCH_STREAM]).permutation(len(others))[:n_search]
    return {
        "train_dt": sorted(train),
        "val_dt": sorted(val),
        "train_search_dt": sorted(others[i] for i in picks),
        "val_search_dt": sorted(val_search),
    }


def make_splits(case_patients: Mapping[str, str], seed: int, val_fraction: float,
                search_fraction: float, test_patients: Mapping[str, str] | None = None,
                test_fraction: float = 0.0, test_source: str = "",
                unet_train: Mapping | None = None) -> dict:
    """The content of ``splits.json``: parameters, patients and case ids per split.

    ``case_patients`` (case -> patient) are split as in Fig. 5; ``test_patients`` (case ->
    patient, already held out) become ``test_dt`` as they are, recorded with ``test_fraction``
    and ``test_source`` (``"labelsTs"`` or ``"test_fraction"``). Without test cases the content
    has no test keys (the file of earlier versions). ``unet_train``: ``{"source", "fold",
    "cases", "patients"}`` of a given U-Net's training cases (the ``patients`` are kept out of
    val_dt and val_search_dt), recorded as ``unet_train``; ``None``: no such key."""
    seen = None if unet_train is None else list(unet_train["patients"])
    patients = split_patients(list(case_patients.values()), seed, val_fraction, search_fraction,
                              seen, "" if unet_train is None else unet_train["source"])
    cases = {name: sorted(c for c, p in case_patients.items() if p in set(ids))
             for name, ids in patients.items()}
    splits = {"version": SPLITS_VERSION, "seed": seed, "val_fraction": val_fraction,
              "search_fraction": search_fraction}
    if test_patients:
        patients[TEST_SPLIT] = sorted(set(test_patients.values()))
        cases[TEST_SPLIT] = sorted(test_patients)
        splits |= {"test_fraction": test_fraction, "test_source": test_source}
    if unet_train is not None:
        splits["unet_train"] = {"source": unet_train["source"], "fold": unet_train["fold"],
                                "cases": sorted(unet_train["cases"]),
                                "patients": sorted(unet_train["patients"])}
    return splits | {"patients": patients, "cases": cases}


def load_or_make_splits(path: pathlib.Path, case_patients: Mapping[str, str], seed: int,
                        val_fraction: float, search_fraction: float,
                        test_patients: Mapping[str, str] | None = None,
                        test_fraction: float = 0.0, test_source: str = "",
                        unet_train: Mapping | None = None) -> dict:
    """Reuse ``path`` when it was made for the same cases (test cases included), parameters and
    U-Net training cases (``unet_train``, see :func:`make_splits`), else (re)write it. A file
    without test keys matches a dataset without test cases, one without ``unet_train`` a config
    without the U-Net's training cases."""
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
                         and old.get("test_source") == test_source))
                and _same_unet_train(old.get("unet_train"), unet_train))
        if same:
            validate_splits(old, path)
            return old
    splits = make_splits(case_patients, seed, val_fraction, search_fraction, test_patients,
                         test_fraction, test_source, unet_train)
    validate_splits(splits, path)
    with disk_full_guard(path.parent, "splits.json", "data.cache_dir", needed=4096):
        atomic_write_text(path, json.dumps(splits, indent=1) + "\n")  # removes its temp on error
    return splits


def _same_unet_train(old: Mapping | None, new: Mapping | None) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return (sorted(old.get("cases", [])) == sorted(new["cases"])
            and sorted(old.get("patients", [])) == sorted(new["patients"]))


def validate_splits(splits: dict, where: pathlib.Path | str) -> None:
    """Check Fig. 5's invariants: no patient in both train_dt and val_dt, search subsets
    disjoint, inside train_dt and equally numbered; no test_dt patient or case in any of
    the four; and (``unet_train``) no patient or case the given U-Net was trained on in
    val_dt, val_search_dt or test_dt."""
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
    unet = splits.get("unet_train")
    if unet is not None:
        seen, seen_cases = set(unet.get("patients", [])), set(unet.get("cases", []))
        for k in ("val_dt", "val_search_dt", TEST_SPLIT):
            ids = set(splits["patients"].get(k, []))
            cases = set(splits.get("cases", {}).get(k, []))
            if seen & ids or seen_cases & cases:
                problems.append(f"patients the U-Net was trained on in {k}: "
                                f"{sorted(seen & ids) or sorted(seen_cases & cases)}")
    if problems:
        raise DataError(f"{where}: invalid splits: {'; '.join(problems)}")
