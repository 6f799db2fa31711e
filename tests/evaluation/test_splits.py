"""Grouped K-fold: no group on both sides, every sample tested once, folds balanced."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import grouped_kfold


def _groups(n_groups: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=n_groups)
    return [f"g{g}" for g, size in enumerate(sizes) for _ in range(size)]


@pytest.mark.parametrize("stratified", [False, True])
def test_no_group_is_split_across_train_and_test(stratified: bool) -> None:
    groups = _groups(60)
    target = np.random.default_rng(1).normal(10, 2, len(groups)) if stratified else None
    folds = grouped_kfold(groups, 5, target=target, seed=3)
    seen_in_test: list[int] = []
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}
        assert len(train) + len(test) == len(groups)
        seen_in_test.extend(test.tolist())
    assert sorted(seen_in_test) == list(range(len(groups)))


def test_folds_get_near_equal_numbers_of_groups_and_the_whole_target_range() -> None:
    groups = [f"g{i}" for i in range(50)]
    target = np.linspace(5, 15, 50)
    folds = grouped_kfold(groups, 5, target=target, seed=0)
    assert [len(test) for _, test in folds] == [10] * 5
    for _, test in folds:
        # Stratified: each fold holds one group from every block of five by target.
        assert target[test].min() < 6.1 and target[test].max() > 13.9


def test_same_seed_same_folds_other_seed_other_folds() -> None:
    groups = _groups(40)
    a = grouped_kfold(groups, 4, seed=1)
    b = grouped_kfold(groups, 4, seed=1)
    c = grouped_kfold(groups, 4, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def test_too_few_groups_is_refused() -> None:
    with pytest.raises(ValueError):
        grouped_kfold(["a", "a", "b"], 3)
    with pytest.raises(ValueError):
        grouped_kfold(["a", "b"], 1)
