"""Cross-validation splits that keep every group (patient, duplicate image) inside one fold.

Row-level K-fold on data with duplicates scores a model on images it was trained on; grouping
is the only honest split. Folds are also balanced on the target (groups are dealt out in order
of their mean target) so every fold sees the whole Hb range and fold metrics are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

IndexArray = NDArray[np.intp]


def grouped_kfold(
    groups: Sequence[object],
    n_folds: int,
    *,
    target: ArrayLike | None = None,
    seed: int = 0,
) -> list[tuple[IndexArray, IndexArray]]:
    """``n_folds`` (train_index, test_index) pairs; no group is ever on both sides.

    With ``target``, groups are sorted by their mean target and dealt out in blocks of
    ``n_folds`` with a random order inside each block (stratified by target); otherwise groups
    are shuffled. Each fold gets ⌊G/k⌋ or ⌈G/k⌉ groups.
    """
    if n_folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    keys = np.asarray([str(g) for g in groups])
    unique, group_index = np.unique(keys, return_inverse=True)
    if unique.shape[0] < n_folds:
        raise ValueError(f"{unique.shape[0]} groups cannot fill {n_folds} folds")
    rng = np.random.default_rng(seed)
    n_groups = unique.shape[0]
    if target is None:
        order = rng.permutation(n_groups)
    else:
        values = np.asarray(target, dtype=np.float64)
        sums = np.bincount(group_index, weights=values, minlength=n_groups)
        counts = np.bincount(group_index, minlength=n_groups)
        # Tiny random jitter breaks ties between equal means without favouring the input order.
        order = np.lexsort(np.stack([rng.random(n_groups), sums / counts]))
    fold_of_group = np.empty(n_groups, dtype=np.intp)
    for start in range(0, n_groups, n_folds):
        block = order[start : start + n_folds]
        fold_of_group[block] = rng.permutation(n_folds)[: block.shape[0]]
    fold_of_row = fold_of_group[group_index]
    return [(np.flatnonzero(fold_of_row != k), np.flatnonzero(fold_of_row == k)) for k in range(n_folds)]
