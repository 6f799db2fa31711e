"""8-connected components of a boolean mask, for the classical localiser and the segmenter's map.

Its own module because both ``models.hb.localise`` and ``models.hb.segmenter`` use it, and the
localiser imports the segmenter.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def label_components(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """8-connected components by runs: each row's runs join the overlapping runs of the row above."""
    height, _ = mask.shape
    parent: list[int] = [0]
    runs: list[tuple[int, int, int, int]] = []  # (row, start, end exclusive, run id)
    previous: list[tuple[int, int, int]] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row in range(height):
        line = mask[row].astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], line, [0]))))
        current: list[tuple[int, int, int]] = []
        for start, end in zip(edges[::2], edges[1::2], strict=True):
            run_id = len(parent)
            parent.append(run_id)
            for p_start, p_end, p_id in previous:
                # 8-connectivity: runs touch when they overlap or meet at a corner.
                if p_start <= end and start <= p_end:
                    a, b = find(run_id), find(p_id)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
            current.append((int(start), int(end), run_id))
            runs.append((row, int(start), int(end), run_id))
        previous = current
    labels = np.zeros(mask.shape, dtype=np.int32)
    roots: dict[int, int] = {}
    for row, start, end, run_id in runs:
        root = find(run_id)
        labels[row, start:end] = roots.setdefault(root, len(roots) + 1)
    return labels, len(roots)
