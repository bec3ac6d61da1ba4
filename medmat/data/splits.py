"""Deterministic k-fold splits, grouped splits, and the Medical Matting Brain-growth split.

A split is a list of folds ``{"fold": i, "train": [ids], "test": [ids]}``; every id is in
exactly one test fold, and within a fold ids keep the dataset's order. A saved split is a JSON
record ``{"scheme", "seed", "k", ..., "folds"}`` written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from medmat.data.sample import Sample
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json

SCHEMES = ("auto", "brain-growth", "kfold", "group")
BRAIN_GROWTH_IDS = tuple(f"case{number:02d}" for number in range(1, 40))
# The authors' params_brain.yaml: RANDOM_SEED 2, KFOLD 4.
BRAIN_GROWTH_SEED = 2
BRAIN_GROWTH_FOLDS = 4


def fold_sizes(n_items: int, k: int) -> list[int]:
    """Sizes of k consecutive folds as sklearn ``KFold`` makes them: the first ``n % k`` get one more."""
    return [n_items // k + (1 if fold < n_items % k else 0) for fold in range(k)]


def consecutive_folds(n_items: int, k: int) -> list[np.ndarray]:
    """Positions 0..n-1 cut into k consecutive chunks (sklearn ``KFold(k)`` without shuffling)."""
    bounds = np.cumsum([0, *fold_sizes(n_items, k)])
    return [np.arange(bounds[fold], bounds[fold + 1]) for fold in range(k)]


def folds_from_test_sets(ids: Sequence[str], test_sets: Sequence[set]) -> list[dict]:
    """Build ``{"fold", "train", "test"}`` dicts from each fold's set of test ids, in dataset order."""
    return [
        {"fold": fold,
         "train": [case for case in ids if case not in test],
         "test": [case for case in ids if case in test]}
        for fold, test in enumerate(test_sets)
    ]


def _check_ids(ids: Sequence[str], k: int, where: str | None = None) -> list[str]:
    ids = [str(case) for case in ids]
    if len(set(ids)) != len(ids):
        raise MedmatError("split: case ids are not unique", where)
    if k < 2:
        raise MedmatError(f"split: k must be at least 2, got {k}", where)
    if len(ids) < k:
        raise MedmatError(f"split: cannot make {k} folds from {len(ids)} cases", where)
    return ids


def kfold_split(ids: Sequence[str], k: int = 4, seed: int = 0, groups: Sequence[str] | None = None) -> list[dict]:
    """Deterministic (grouped) k-fold split.

    Without groups: the ids are shuffled with ``np.random.default_rng(seed)`` and cut into k
    consecutive folds (sizes differ by at most one). With groups: the distinct groups are
    shuffled with the seed, then, largest first (ties in shuffled order), each group goes to
    the fold with the fewest ids so far (lowest index on ties), as sklearn ``GroupKFold``
    balances; all ids of a group land in the same fold.

    Args:
        ids: unique case ids.
        k: number of folds (2 <= k <= number of ids, or of groups).
        seed: shuffling seed.
        groups: one group per id (LIDC: the patient), or None.

    Returns:
        k folds ``{"fold": i, "train": [ids], "test": [ids]}``, ids in the order given.
    """
    ids = _check_ids(ids, k)
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(len(ids))
        test_sets = [{ids[position] for position in order[chunk]} for chunk in consecutive_folds(len(ids), k)]
        return folds_from_test_sets(ids, test_sets)

    groups = [str(group) for group in groups]
    if len(groups) != len(ids):
        raise ValueError(f"groups has {len(groups)} entries for {len(ids)} ids")
    members: dict[str, list[str]] = {}
    for case, group in zip(ids, groups):
        members.setdefault(group, []).append(case)
    if len(members) < k:
        raise MedmatError(f"split: cannot make {k} folds from {len(members)} groups")
    names = list(members)
    shuffled = [names[position] for position in rng.permutation(len(names))]
    largest_first = sorted(shuffled, key=lambda group: -len(members[group]))  # stable: keeps the shuffle on ties
    test_sets: list[set] = [set() for _ in range(k)]
    for group in largest_first:
        lightest = min(range(k), key=lambda fold: len(test_sets[fold]))
        test_sets[lightest].update(members[group])
    return folds_from_test_sets(ids, test_sets)


def brain_growth_split(ids: Sequence[str]) -> list[dict]:
    """The Medical Matting authors' 4-fold split of the 39 Brain-growth cases.

    Their ``data_spliter.py``: ``np.random.seed(2)``, shuffle the indices 0..38 (the cases in
    key order case01..case39), then fold i tests the cases at the shuffled positions that
    ``KFold(4)`` (no shuffle) gives as fold i's test positions (sizes 10, 10, 10, 9).
    ``RandomState(2).shuffle`` draws exactly what the legacy global seeding does, without
    touching numpy's global state.

    Args:
        ids: exactly the ids case01..case39, in any order.

    Returns:
        4 folds ``{"fold", "train", "test"}``, ids in the order given.

    Raises:
        MedmatError: when ``ids`` are not exactly the 39 Brain-growth case ids.
    """
    ids = [str(case) for case in ids]
    if sorted(ids) != list(BRAIN_GROWTH_IDS):
        unexpected = sorted(set(ids) - set(BRAIN_GROWTH_IDS))[:3]
        missing = sorted(set(BRAIN_GROWTH_IDS) - set(ids))[:3]
        raise MedmatError(
            f"brain-growth split needs exactly the 39 ids case01..case39 (got {len(ids)} ids; "
            f"unexpected {unexpected}, missing {missing})"
        )
    shuffled = np.arange(len(BRAIN_GROWTH_IDS))
    np.random.RandomState(BRAIN_GROWTH_SEED).shuffle(shuffled)
    test_sets = [
        {BRAIN_GROWTH_IDS[index] for index in shuffled[chunk]}
        for chunk in consecutive_folds(len(shuffled), BRAIN_GROWTH_FOLDS)
    ]
    return folds_from_test_sets(ids, test_sets)


def has_shared_groups(samples: Sequence[Sample]) -> bool:
    """True when some group holds several samples (LIDC: slices of one patient)."""
    groups = [sample.group for sample in samples]
    return len(set(groups)) < len(groups)


def choose_scheme(samples: Sequence[Sample], k: int = 4, scheme: str = "auto") -> str:
    """Resolve ``scheme``: "auto" picks "brain-growth" for case01..case39 with k = 4, "group"
    when groups are shared by several samples, else "kfold". Other schemes are returned as is."""
    if scheme not in SCHEMES:
        raise MedmatError(f"unknown split scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if scheme != "auto":
        return scheme
    if k == BRAIN_GROWTH_FOLDS and sorted(sample.id for sample in samples) == list(BRAIN_GROWTH_IDS):
        return "brain-growth"
    return "group" if has_shared_groups(samples) else "kfold"


def make_split(samples: Sequence[Sample], k: int = 4, seed: int = 0, scheme: str = "auto") -> list[dict]:
    """Split a dataset into k folds by the chosen scheme.

    Args:
        samples: the dataset.
        k: number of folds (the brain-growth scheme needs 4).
        seed: shuffling seed (the brain-growth scheme always uses the authors' seed 2).
        scheme: "auto", "brain-growth", "kfold" or "group"; :func:`choose_scheme` tells which
            one "auto" resolves to, for the record :func:`save_split` writes.

    Returns:
        k folds ``{"fold": i, "train": [ids], "test": [ids]}``.
    """
    scheme = choose_scheme(samples, k, scheme)
    ids = [sample.id for sample in samples]
    if scheme == "brain-growth":
        if k != BRAIN_GROWTH_FOLDS:
            raise MedmatError(f"the brain-growth split has {BRAIN_GROWTH_FOLDS} folds, not {k}")
        return brain_growth_split(ids)
    groups = [sample.group for sample in samples] if scheme == "group" else None
    return kfold_split(ids, k, seed, groups)


def save_split(path: str | os.PathLike, split: list[dict], meta: dict) -> None:
    """Write a split as JSON, atomically.

    Args:
        path: destination ``.json``.
        split: the folds, as :func:`make_split` returns them.
        meta: at least ``scheme``, ``seed`` and ``k``; any other provenance (the dataset path)
            is kept. A "folds" entry in it is ignored: ``split`` is what is written.
    """
    missing = [key for key in ("scheme", "seed", "k") if key not in meta]
    if missing:
        raise ValueError(f"split meta lacks {missing}")
    record = {key: value for key, value in meta.items() if key != "folds"}
    record["folds"] = [
        {"fold": int(fold["fold"]), "train": list(fold["train"]), "test": list(fold["test"])} for fold in split
    ]
    atomic_write_json(path, record)


def load_split(path: str | os.PathLike, ids: Sequence[str] | None = None) -> dict:
    """Read a split written by :func:`save_split`; check it against the dataset's ids if given.

    Returns:
        the record ``{"scheme", "seed", "k", ..., "folds": [{"fold", "train", "test"}]}``.

    Raises:
        MedmatError: the file is missing, not JSON, not a split, or (with ``ids``) does not
            fit the dataset (see :func:`check_split`).
    """
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        raise MedmatError("split file not found", where) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MedmatError(f"cannot read split file: {error}", where) from None
    if not isinstance(record, dict) or not isinstance(record.get("folds"), list) or not record["folds"]:
        raise MedmatError("not a split file: expected a JSON object with a non-empty 'folds' list", where)
    for position, fold in enumerate(record["folds"]):
        if not (isinstance(fold, dict) and all(isinstance(fold.get(key), list) for key in ("train", "test"))
                and all(isinstance(case, str) for case in fold["train"] + fold["test"])):
            raise MedmatError(f"split fold {position} must have 'train' and 'test' lists of case ids", where)
    if ids is not None:
        check_split(record["folds"], ids, where)
    return record


def check_split(split: list[dict], ids: Sequence[str], where: str | None = None) -> None:
    """Raise MedmatError unless the folds fit the dataset.

    Every id of the split must be in ``ids``, every dataset id must be in exactly one test
    fold, and no fold may train on its own test ids.
    """
    known = set(ids)
    test_count = {case: 0 for case in known}
    for fold in split:
        name = fold.get("fold", "?")
        unknown = sorted((set(fold["train"]) | set(fold["test"])) - known)
        if unknown:
            raise MedmatError(
                f"split fold {name} names {len(unknown)} case(s) not in the dataset, e.g. {unknown[0]!r}", where)
        overlap = set(fold["train"]) & set(fold["test"])
        if overlap:
            raise MedmatError(f"split fold {name} has case {sorted(overlap)[0]!r} in both train and test", where)
        for case in fold["test"]:
            test_count[case] += 1
    uncovered = sorted(case for case, count in test_count.items() if count != 1)
    if uncovered:
        raise MedmatError(
            f"{len(uncovered)} case(s) are not in exactly one test fold, e.g. {uncovered[0]!r} "
            f"({test_count[uncovered[0]]} folds)", where)
