"""k-fold splits: the authors' Brain-growth folds, grouped folds, the JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import KFold

from medmat.data.phantom import make_phantom_dataset
from medmat.data.sample import Sample
from medmat.data.splits import (
    BRAIN_GROWTH_IDS,
    brain_growth_split,
    check_split,
    choose_scheme,
    consecutive_folds,
    kfold_split,
    load_split,
    make_split,
    save_split,
)
from medmat.errors import MedmatError

# The Medical Matting authors' Brain-growth test folds (case numbers, sorted within a fold).
AUTHORS_TEST_FOLDS = [
    [1, 3, 10, 14, 15, 18, 20, 30, 31, 36],
    [2, 13, 17, 24, 25, 26, 29, 33, 37, 38],
    [4, 5, 6, 7, 11, 21, 27, 28, 34, 39],
    [8, 9, 12, 16, 19, 22, 23, 32, 35],
]


def tiny_samples(ids, groups=None) -> list[Sample]:
    groups = groups or [None] * len(ids)
    return [
        Sample(id=case, image=np.zeros((1, 2, 2), np.float32), masks=np.zeros((1, 2, 2), bool), group=group)
        for case, group in zip(ids, groups)
    ]


def lidc_like(n_patients: int = 23, seed: int = 0) -> tuple[list[str], list[str]]:
    """Slice ids grouped by patient, 1..9 slices per patient."""
    counts = np.random.default_rng(seed).integers(1, 10, size=n_patients)
    ids, groups = [], []
    for patient, count in enumerate(counts):
        for slice_index in range(count):
            ids.append(f"LIDC-IDRI-{patient:04d}/nodule-0/slice-{slice_index}")
            groups.append(f"LIDC-IDRI-{patient:04d}")
    return ids, groups


def assert_partition(split, ids):
    tests = [case for fold in split for case in fold["test"]]
    assert sorted(tests) == sorted(ids)
    for fold in split:
        assert set(fold["train"]) == set(ids) - set(fold["test"])


def test_brain_growth_split_is_the_authors():
    split = brain_growth_split(list(BRAIN_GROWTH_IDS))
    assert [fold["fold"] for fold in split] == [0, 1, 2, 3]
    for fold, expected in zip(split, AUTHORS_TEST_FOLDS):
        assert fold["test"] == [f"case{number:02d}" for number in expected]
    assert_partition(split, BRAIN_GROWTH_IDS)


def test_brain_growth_split_equals_the_authors_code_path():
    # Their data_spliter.py, literally: global seed, shuffle, sklearn KFold(4) positions.
    state = np.random.get_state()
    try:
        np.random.seed(2)
        indices = list(range(39))
        np.random.shuffle(indices)
    finally:
        np.random.set_state(state)
    expected = [sorted(indices[i] for i in test) for _, test in KFold(n_splits=4, shuffle=False).split(np.arange(39))]
    split = brain_growth_split(list(BRAIN_GROWTH_IDS))
    assert [[BRAIN_GROWTH_IDS.index(case) for case in fold["test"]] for fold in split] == expected


def test_brain_growth_split_ignores_the_order_of_ids():
    reordered = brain_growth_split(list(reversed(BRAIN_GROWTH_IDS)))
    straight = brain_growth_split(list(BRAIN_GROWTH_IDS))
    assert [set(fold["test"]) for fold in reordered] == [set(fold["test"]) for fold in straight]


@pytest.mark.parametrize(
    "ids", [list(BRAIN_GROWTH_IDS[:-1]), [*BRAIN_GROWTH_IDS[:-1], "case40"], [*BRAIN_GROWTH_IDS, "case40"]]
)
def test_brain_growth_split_refuses_other_ids(ids):
    with pytest.raises(MedmatError, match="case01..case39"):
        brain_growth_split(ids)


@pytest.mark.parametrize("n_items, k", [(39, 4), (16, 4), (10, 3), (7, 7)])
def test_consecutive_folds_match_sklearn_kfold(n_items, k):
    ours = [chunk.tolist() for chunk in consecutive_folds(n_items, k)]
    theirs = [test.tolist() for _, test in KFold(n_splits=k).split(np.arange(n_items))]
    assert ours == theirs


def test_kfold_split_partitions_and_balances():
    ids = [f"case-{index}" for index in range(18)]
    split = kfold_split(ids, k=4, seed=3)
    assert_partition(split, ids)
    assert sorted(len(fold["test"]) for fold in split) == [4, 4, 5, 5]
    for fold in split:  # dataset order is kept within a fold
        assert fold["test"] == sorted(fold["test"], key=ids.index)


def test_kfold_split_is_deterministic_under_the_seed():
    ids = [f"case-{index}" for index in range(30)]
    assert kfold_split(ids, seed=5) == kfold_split(ids, seed=5)
    assert kfold_split(ids, seed=5) != kfold_split(ids, seed=6)


def test_group_split_never_straddles_a_group():
    ids, groups = lidc_like()
    split = kfold_split(ids, k=4, seed=0, groups=groups)
    assert_partition(split, ids)
    group_of = dict(zip(ids, groups))
    fold_of_group = {}
    for fold in split:
        for case in fold["test"]:
            assert fold_of_group.setdefault(group_of[case], fold["fold"]) == fold["fold"]
    sizes = [len(fold["test"]) for fold in split]
    largest_group = max(groups.count(group) for group in set(groups))
    assert max(sizes) - min(sizes) <= largest_group


def test_group_split_balances_largest_first_hand_worked():
    # Groups a:5, b:3, c:2, d:2 into 2 folds: a -> 0, b -> 1, then the two 2-groups fill the
    # lighter fold (5 vs 3 -> 1) and the tie (5 vs 5 -> 0): test sizes 7 and 5, a and b apart.
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2
    ids = [f"id{index}" for index in range(len(groups))]
    for seed in range(5):
        split = kfold_split(ids, k=2, seed=seed, groups=groups)
        assert [len(fold["test"]) for fold in split] == [7, 5]
        assert set(ids[:5]) <= set(split[0]["test"]) and set(ids[5:8]) <= set(split[1]["test"])


def test_kfold_split_refuses_impossible_requests():
    with pytest.raises(MedmatError, match="3 cases"):
        kfold_split(["a", "b", "c"], k=4)
    with pytest.raises(MedmatError, match="not unique"):
        kfold_split(["a", "a", "b", "c"], k=2)
    with pytest.raises(MedmatError, match="2 groups"):
        kfold_split(["a", "b", "c", "d"], k=3, groups=["x", "x", "y", "y"])


def test_auto_scheme_choice():
    assert choose_scheme(tiny_samples(BRAIN_GROWTH_IDS)) == "brain-growth"
    assert choose_scheme(tiny_samples(BRAIN_GROWTH_IDS), k=3) == "kfold"
    ids, groups = lidc_like()
    assert choose_scheme(tiny_samples(ids, groups)) == "group"
    assert choose_scheme(make_phantom_dataset(n_cases=8, size=32)) == "kfold"
    with pytest.raises(MedmatError, match="unknown split scheme"):
        choose_scheme(tiny_samples(ids), scheme="random")


def test_make_split_follows_the_scheme():
    brain = tiny_samples(BRAIN_GROWTH_IDS)
    assert make_split(brain) == brain_growth_split(list(BRAIN_GROWTH_IDS))
    assert make_split(brain, scheme="kfold", seed=1) == kfold_split(list(BRAIN_GROWTH_IDS), 4, 1)
    with pytest.raises(MedmatError, match="4 folds"):
        make_split(brain, k=5, scheme="brain-growth")
    ids, groups = lidc_like()
    assert make_split(tiny_samples(ids, groups)) == kfold_split(ids, 4, 0, groups)


def test_json_round_trip(tmp_path):
    ids, groups = lidc_like()
    split = make_split(tiny_samples(ids, groups), k=3, seed=9)
    path = tmp_path / "split.json"
    save_split(path, split, {"scheme": "group", "seed": 9, "k": 3, "data": "lidc"})
    record = load_split(path, ids=ids)
    assert record["folds"] == split
    assert (record["scheme"], record["seed"], record["k"], record["data"]) == ("group", 9, 3, "lidc")
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic writer left no temporary file


def test_load_split_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MedmatError, match="not found") as missing:
        load_split(tmp_path / "absent.json")
    assert "absent.json" in str(missing.value)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"folds": [')
    with pytest.raises(MedmatError, match="cannot read split file"):
        load_split(corrupt)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"folds": [{"train": "abc", "test": []}]}))
    with pytest.raises(MedmatError, match="fold 0"):
        load_split(wrong)


def test_load_split_refuses_a_split_of_another_dataset(tmp_path):
    ids = [f"case-{index}" for index in range(8)]
    path = tmp_path / "split.json"
    save_split(path, kfold_split(ids, k=2), {"scheme": "kfold", "seed": 0, "k": 2})
    with pytest.raises(MedmatError, match="not in the dataset") as error:
        load_split(path, ids=ids[:-1])
    assert "split.json" in str(error.value)
    with pytest.raises(MedmatError, match="not in exactly one test fold"):
        load_split(path, ids=[*ids, "case-new"])


def test_check_split_refuses_train_test_overlap():
    split = [{"fold": 0, "train": ["a", "b"], "test": ["b"]}, {"fold": 1, "train": ["b"], "test": ["a"]}]
    with pytest.raises(MedmatError, match="both train and test"):
        check_split(split, ["a", "b"])


def test_real_brain_growth_keys_get_the_authors_split(shared_data):
    from medmat.data.safe_pickle import safe_load

    release = safe_load(shared_data / "medical-matting" / "brain_growth_alpha.zip")
    keys = list(release)
    assert keys == list(BRAIN_GROWTH_IDS)  # key order is the order the authors' indices refer to
    split = make_split(tiny_samples(keys))
    assert [len(fold["test"]) for fold in split] == [10, 10, 10, 9]
    assert split[3]["test"] == [f"case{number:02d}" for number in AUTHORS_TEST_FOLDS[3]]
