"""Which values are measurements: NaN, infinities and STDF sentinels (|v| >= 1e30) are not;
means of those per group, and the runs and lots of the group ids charts follow.

>>> import numpy as np
>>> valid_mask(np.array([[1.0, np.nan], [9.9e37, -2.0]])).tolist()
[[True, False], [False, True]]
>>> sums, counts = group_sums(np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]]), np.array([0, 0, 1]), 2)
>>> sums.tolist(), counts.tolist()
([[4.0, 2.0], [5.0, 4.0]], [[2.0, 1.0], [1.0, 1.0]])
>>> run_starts(np.array(["A/1", "A/1", "A/2"])).tolist(), lots_of(np.array(["A/1", "B/7"])).tolist()
([True, False, True], ['A', 'B'])
"""

from __future__ import annotations

import numpy as np

from stream_ct.record import SENTINEL_ABS


def valid_mask(X: np.ndarray) -> np.ndarray:
    """True where ``X`` holds a finite measurement below the sentinel magnitude."""
    with np.errstate(invalid="ignore"):
        return np.abs(X) < SENTINEL_ABS


def evenly_spaced(X: np.ndarray, at_most: int) -> np.ndarray:
    """At most ``at_most`` evenly spaced measurements of each column of ``X``, NaN-padded:
    a column measured on every row keeps rows 0, k, 2k, ... and a sparsely measured one
    keeps its own values however its rows fall.

    >>> evenly_spaced(np.array([[1.0, np.nan], [2.0, 5.0], [3.0, np.nan], [4.0, np.nan]]), 2).tolist()
    [[1.0, 5.0], [3.0, nan]]
    """
    valid = valid_mask(X)
    columns = [X[valid[:, j], j] for j in range(X.shape[1])]
    columns = [c[::max(1, -(-len(c) // at_most))] for c in columns]
    out = np.full((max(map(len, columns), default=0), X.shape[1]), np.nan)
    for j, c in enumerate(columns):
        out[:len(c), j] = c
    return out


def group_sums(X: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label 0..n_groups-1 (rows) and column: the sum and the count of the measurements."""
    ok = valid_mask(X)
    sums = np.stack([np.bincount(labels, c, n_groups) for c in np.where(ok, X, 0.0).T], axis=1)
    counts = np.stack([np.bincount(labels, c, n_groups) for c in ok.T.astype(float)], axis=1)
    return sums, counts


def mean_or_nan(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``total / count``, NaN where ``count`` is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def run_starts(ids: np.ndarray) -> np.ndarray:
    """Where a run of equal ids starts (stream order)."""
    return np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, dtype=bool)


def lots_of(wafer_ids) -> np.ndarray | None:
    """The lot of every ``lot/wafer`` id, or None unless every id has that form."""
    ids = [str(g) for g in wafer_ids]
    if not all("/" in g for g in ids):
        return None
    lots = np.empty(len(ids), dtype=object)
    lots[:] = [g.rsplit("/", 1)[0] for g in ids]
    return lots
