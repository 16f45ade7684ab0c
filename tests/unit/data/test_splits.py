"""Identity-disjoint splits: deterministic, order-independent, exact quotas, leaks caught."""

import random

import pandas as pd
import pytest

from liveness.data.splits import assign_splits, check_disjoint, split_quotas

LIVE = {"train": 0.9, "val": 0.1}
SPOOF = {"calib": 0.5, "test": 0.5}


def _subjects(count):
    return [f"subject-{index:04d}" for index in range(count)]


def test_deterministic_for_a_seed_and_changes_with_it():
    subjects = _subjects(50)
    first = assign_splits(subjects, LIVE, seed=7)
    assert first == assign_splits(subjects, LIVE, seed=7)
    assert first != assign_splits(subjects, LIVE, seed=8)


def test_independent_of_input_order_and_duplicates():
    subjects = _subjects(40)
    shuffled = subjects * 2
    random.Random(0).shuffle(shuffled)
    assert assign_splits(shuffled, SPOOF, seed=3) == assign_splits(subjects, SPOOF, seed=3)
    assert assign_splits(subjects, {"val": 0.1, "train": 0.9}, 3) == assign_splits(subjects, LIVE, 3)


def test_fractions_respected():
    assignment = assign_splits(_subjects(100), LIVE, seed=0)
    assert sorted(assignment) == _subjects(100)
    counts = pd.Series(assignment).value_counts().to_dict()
    assert counts == {"train": 90, "val": 10}
    assert split_quotas(7, SPOOF) in ({"calib": 4, "test": 3}, {"calib": 3, "test": 4})
    assert split_quotas(10, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}) == {"a": 4, "b": 3, "c": 3}


@pytest.mark.parametrize("count", [2, 3, 5])
def test_every_split_non_empty_for_small_sets(count):
    assignment = assign_splits(_subjects(count), LIVE, seed=1)
    assert set(assignment.values()) == {"train", "val"}
    assert list(assignment.values()).count("train") == count - 1


def test_fewer_subjects_than_splits_and_none():
    assert len(assign_splits(["only"], LIVE, seed=0)) == 1
    assert assign_splits([], LIVE, seed=0) == {}


@pytest.mark.parametrize("fractions, named", [
    ({"train": 0.9, "val": 0.2}, "sum to"),
    ({"train": 1.1, "val": -0.1}, "'val'"),
    ({"train": 1.0, "val": 0.0}, "'val'"),
    ({"train": float("nan")}, "'train'"),
    ({}, "empty"),
])
def test_bad_fractions_error(fractions, named):
    with pytest.raises(ValueError, match=named):
        assign_splits(_subjects(10), fractions, seed=0)


def test_check_disjoint_passes_and_names_crossing_subject():
    frame = pd.DataFrame({"subject": ["a", "a", "b", "c"], "split": ["train", "train", "val", "train"]})
    check_disjoint(frame)
    frame.loc[3, "subject"] = "b"
    with pytest.raises(ValueError, match=r"'b' in \['train', 'val'\]") as caught:
        check_disjoint(frame)
    assert "'a'" not in str(caught.value)


def test_check_disjoint_custom_columns_and_missing_column():
    frame = pd.DataFrame({"who": ["x", "x"], "part": ["calib", "test"]})
    with pytest.raises(ValueError, match="'x'"):
        check_disjoint(frame, subject_col="who", split_col="part")
    with pytest.raises(ValueError, match="missing"):
        check_disjoint(frame)
