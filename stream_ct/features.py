"""Turn part records into a numeric matrix in a fixed feature order.

Missing tests, nulls and sentinel results (NaN, inf, |v| >= 1e30) become NaN, so no model or
detector ever sees a 9.9e37.

>>> names = select_features([{"tests": {"1:a": 1.0, "2:b": 2.0, "3:c": 3.0}}], include=("1:*", "2:*"))
>>> names
['1:a', '2:b']
>>> feature_matrix([{"tests": {"1:a": 9.9e37, "2:b": 2.0}}], names).tolist()
[[nan, 2.0]]
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Sequence

import numpy as np

from stream_ct.record import SENTINEL_ABS


def select_features(records: Iterable[dict[str, Any]], include: Sequence[str] = ("*",),
                    exclude: Sequence[str] = ()) -> list[str]:
    """Test keys seen in ``records`` that match an include pattern and no exclude pattern, sorted."""
    seen: set[str] = set()
    for record in records:
        seen.update(record["tests"])
    keep = [name for name in seen
            if any(fnmatch.fnmatchcase(name, p) for p in include)
            and not any(fnmatch.fnmatchcase(name, p) for p in exclude)]
    return sorted(keep)


def feature_matrix(records: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """An ``len(records) x len(names)`` float matrix; anything not a measurement is NaN."""
    out = np.full((len(records), len(names)), np.nan)
    column = {name: j for j, name in enumerate(names)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, record in enumerate(records):
        for name, value in record["tests"].items():
            j = column.get(name)
            if j is not None and value is not None:
                rows.append(i)
                cols.append(j)
                vals.append(value)
    if vals:
        values = np.asarray(vals, dtype=float)
        values[~np.isfinite(values) | (np.abs(values) >= SENTINEL_ABS)] = np.nan
        out[rows, cols] = values
    return out


def target_vector(records: Sequence[dict[str, Any]], field: str) -> np.ndarray:
    """The target field of each record as floats; NaN where the record has no label yet."""
    return np.array([np.nan if r.get(field) is None else float(r[field]) for r in records])


def count_sentinels(records: Sequence[dict[str, Any]], names: Sequence[str]) -> tuple[int, int]:
    """``(sentinels, values)``: how many of the selected results are NaN, inf or |v| >= 1e30."""
    wanted = set(names)
    values = [v for r in records for k, v in r["tests"].items() if k in wanted and v is not None]
    if not values:
        return 0, 0
    arr = np.asarray(values, dtype=float)
    return int((~np.isfinite(arr) | (np.abs(arr) >= SENTINEL_ABS)).sum()), len(arr)
