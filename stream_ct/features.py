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
import itertools
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
    """An ``len(records) x len(names)`` float matrix; anything not a measurement is NaN.

    Records of one test program list their tests in the same order, so records are grouped by
    their key layout (one tuple per record, built in C) and each group is converted in one
    ``np.array`` call with a precomputed column map, instead of a Python step per test.
    """
    out = np.full((len(records), len(names)), np.nan)
    if not len(records) or not len(names):
        return out
    column = {name: j for j, name in enumerate(names)}
    layouts: dict[tuple, list[int]] = {}
    for i, record in enumerate(records):
        layouts.setdefault(tuple(record["tests"]), []).append(i)
    for keys, rows in layouts.items():
        src = [k for k, name in enumerate(keys) if name in column]
        if not src:
            continue
        block = _values_block([records[i]["tests"] for i in rows], len(keys))
        cols = np.fromiter((column[keys[k]] for k in src), dtype=np.intp, count=len(src))
        if len(src) < len(keys):
            block = block[:, src]
        if len(rows) == len(records):  # one layout for the whole batch (one test program)
            out[:, cols] = block
        else:
            out[np.asarray(rows, dtype=np.intp)[:, None], cols] = block
    with np.errstate(invalid="ignore"):
        out[np.abs(out) >= SENTINEL_ABS] = np.nan  # inf too; NaN stays NaN
    return out


def _values_block(tests: list[dict[str, Any]], width: int) -> np.ndarray:
    """The values of same-layout ``tests`` dicts as a ``len(tests) x width`` float array."""
    try:  # the common case, no nulls: one C loop over every value
        flat = np.fromiter(itertools.chain.from_iterable(map(dict.values, tests)), dtype=float,
                           count=len(tests) * width)
        return flat.reshape(len(tests), width)
    except TypeError:  # a null result: np.array turns None into NaN
        return np.array([list(t.values()) for t in tests], dtype=float).reshape(len(tests), width)


def _feature_matrix_reference(records: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """The per-test loop ``feature_matrix`` replaced (kept for tests and benchmarks)."""
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


def measurement_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """Per record, the results that are real measurements (no null, NaN, inf or |v| >= 1e30),
    as a new dict in the record's test order: what the online model learns from.

    Same result as filtering each record's tests one by one, but checked per key layout with
    numpy; a record whose results are all measurements (the usual case) is copied in C.
    """
    out: list[dict[str, float]] = [{}] * len(records)
    layouts: dict[tuple, list[int]] = {}
    for i, record in enumerate(records):
        layouts.setdefault(tuple(record["tests"]), []).append(i)
    for keys, rows in layouts.items():
        tests = [records[i]["tests"] for i in rows]
        if not keys:
            continue
        block = _values_block(tests, len(keys))
        with np.errstate(invalid="ignore"):
            keep = np.abs(block) < SENTINEL_ABS  # False for NaN (and None) and inf
        whole = keep.all(axis=1)
        for j, i in enumerate(rows):
            if whole[j]:
                out[i] = dict(tests[j])
            else:
                out[i] = {k: v for k, v, ok in zip(keys, tests[j].values(), keep[j].tolist()) if ok}
    return out


def die_ids(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each record's die position as one integer, ``(x + 32768) * 65536 + (y + 32768)``
    (STDF coordinates are 16-bit), or -1 where it lacks ``x`` or ``y``.

    >>> die_ids([{"x": 3, "y": -2}, {"x": 3}]).tolist()
    [2147713022, -1]
    """
    return np.array([(r["x"] + 32768) * 65536 + r["y"] + 32768
                     if r.get("x") is not None and r.get("y") is not None else -1 for r in records],
                    dtype=np.int64)


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
