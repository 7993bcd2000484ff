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

from stream_ct.binary_record import Results
from stream_ct.record import MISSING_COORD, SENTINEL_ABS, wafer_key


def select_features(records: Iterable[dict[str, Any]], include: Sequence[str] = ("*",),
                    exclude: Sequence[str] = ()) -> list[str]:
    """Test keys seen in ``records`` that match an include pattern and no exclude pattern, sorted.
    A pattern matches a key equal to it, or as a glob: an MPR pin's key ``"300:IDD[7]"`` is
    named as it is (as a glob, ``[7]`` is a character class)."""
    seen: set[str] = set()
    for record in records:
        seen.update(record["tests"])

    def matches(name: str, patterns: Sequence[str]) -> bool:
        return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)

    return sorted(name for name in seen if matches(name, include) and not matches(name, exclude))


def feature_matrix(records: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """An ``len(records) x len(names)`` float matrix; anything not a measurement is NaN."""
    return Measurements(records).matrix(names)


class Measurements:
    """A batch's test results, read out of its records once and kept by key layout.

    Records of one test program list their tests in the same order, so records are grouped by
    their key layout (one tuple per record, built in C) and each group becomes one
    ``values`` block (rows x keys, NaN where a result is not a measurement) in one numpy
    call instead of a Python step per test. The feature matrix for any feature order, the
    online model's input and the count of non-measurements all come from these blocks.

    >>> batch = Measurements([{"tests": {"a": 1.0, "b": None}}, {"tests": {"b": 2.0}}])
    >>> batch.matrix(["b", "a"]).tolist(), batch.missing
    ([[nan, 1.0], [2.0, nan]], 1)
    """

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.records, self.n = records, len(records)
        self._rows: list[dict[str, float]] | None = None
        layouts: dict[tuple, list[int]] = {}
        for i, record in enumerate(records):
            tests = record["tests"]
            layouts.setdefault(tests.names if type(tests) is Results else tuple(tests), []).append(i)
        #: ``(keys, rows, values)`` per key layout: the batch rows (intp) and their results
        self.blocks: list[tuple[tuple[str, ...], np.ndarray, np.ndarray]] = []
        self.missing = 0  # results that are null, NaN, inf or |v| >= 1e30
        for keys, rows in layouts.items():
            if not keys:
                continue
            values = _values_block([records[i]["tests"] for i in rows], len(keys))
            with np.errstate(invalid="ignore"):
                bad = ~(np.abs(values) < SENTINEL_ABS)  # NaN (and None) and inf too
            if bad.any():
                values[bad] = np.nan
                self.missing += int(np.count_nonzero(bad))
            self.blocks.append((keys, np.asarray(rows, dtype=np.intp), values))

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """The ``n x len(names)`` matrix of these results in the order ``names``."""
        out = np.full((self.n, len(names)), np.nan)
        column = {name: j for j, name in enumerate(names)}
        for keys, rows, values in self.blocks:
            src = [k for k, name in enumerate(keys) if name in column]
            if not src:
                continue
            cols = np.fromiter((column[keys[k]] for k in src), dtype=np.intp, count=len(src))
            block = values if len(src) == len(keys) else values[:, src]
            if len(rows) == self.n:  # one layout for the whole batch (one test program)
                out[:, cols] = block
            else:
                out[rows[:, None], cols] = block
        return out

    def rows(self) -> list[dict[str, float]]:
        """``measurement_rows`` of the records (made once, on first use)."""
        if self._rows is None:
            self._rows = measurement_rows(self.records)
        return self._rows


def _values_block(tests: list[dict[str, Any]], width: int) -> np.ndarray:
    """The values of same-layout ``tests`` dicts as a ``len(tests) x width`` float array."""
    if all(type(t) is Results for t in tests):  # binary records: their results are arrays already
        return np.vstack([t.array for t in tests])
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
    (distinct per position: validation keeps coordinates 16-bit), or -1 where ``x`` or ``y``
    is absent, null or STDF's missing value -32768.

    >>> die_ids([{"x": 3, "y": -2}, {"x": 3}, {"x": 3, "y": -32768}]).tolist()
    [2147713022, -1, -1]
    """
    return np.array([(x + 32768) * 65536 + y + 32768
                     if (x := r.get("x")) is not None and (y := r.get("y")) is not None
                     and x != MISSING_COORD and y != MISSING_COORD else -1 for r in records], dtype=np.int64)


def wafer_ids(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each record's wafer as its key ``lot/wafer`` (``wafer_key``), the drift monitor's group id.

    >>> wafer_ids([{"lot_id": "L1", "wafer_id": "W3"}]).tolist()
    ['L1/W3']
    """
    wafers = [(r["lot_id"], r["wafer_id"]) for r in records]
    keys = {w: wafer_key({"lot_id": w[0], "wafer_id": w[1]}) for w in set(wafers)}  # once per wafer
    return np.array([keys[w] for w in wafers])


#: Record fields the drift monitor stratifies by.
STRATA = ("tester", "site", "fab")


def strata_levels(records: Sequence[dict[str, Any]], heads: bool = True) -> dict[str, np.ndarray]:
    """Each record's level of every drift stratum (``STRATA``) as text, "" (no level) where
    the field is absent or null.

    STDF numbers sites per head, so with ``heads`` a record's site is named with its head,
    ``"head/site"`` (site 1 of head 2 is ``"2/1"``); without, or when the record has no head,
    by its number alone (the naming of references registered before heads were named).

    >>> levels = strata_levels([{"tester": "T1", "head": 2, "site": 1}, {"site": 3, "fab": None},
    ...                         {"tester": None, "head": 1, "site": None}])
    >>> {key: level.tolist() for key, level in levels.items()}
    {'tester': ['T1', '', ''], 'site': ['2/1', '3', ''], 'fab': ['', '', '']}
    >>> strata_levels([{"head": 2, "site": 1}], heads=False)["site"].tolist()
    ['1']
    """
    return {key: field_levels(records, key, heads) for key in STRATA}


def field_levels(records: Sequence[dict[str, Any]], field: str, heads: bool = True) -> np.ndarray:
    """Each record's ``field`` as text, "" (no level) where absent or null; a site is named
    with its head as in ``strata_levels``. The drift strata and the fairness gate's groups.

    >>> field_levels([{"fab": "F1"}, {"fab": None}, {"fab": 7}, {}], "fab").tolist()
    ['F1', '', '7', '']
    """
    if field == "site":
        return np.array(["" if (site := r.get("site")) is None else f"{head}/{site}"
                         if heads and (head := r.get("head")) is not None else str(site) for r in records])
    return np.array(["" if (value := r.get(field)) is None else str(value) for r in records])


def names_heads(sites: np.ndarray | None) -> bool:
    """Whether a reference's site levels name their heads (``strata_levels`` with ``heads``):
    a stream's sites are named as its reference's were.

    >>> names_heads(np.array(["1/0", "1/1"])), names_heads(np.array(["0", "1"])), names_heads(None)
    (True, False, True)
    """
    return sites is None or not len(sites) or any("/" in level for level in np.unique(sites).tolist())


def target_vector(records: Sequence[dict[str, Any]], field: str) -> np.ndarray:
    """The target field of each record as floats; NaN where the record has no label yet."""
    return np.array([np.nan if r.get(field) is None else float(r[field]) for r in records])


def count_sentinels(records: Sequence[dict[str, Any]], names: Sequence[str]) -> tuple[int, int]:
    """``(sentinels, values)``: how many of the selected results are inf or |v| >= 1e30, and
    how many there are; a null is no result (nor a NaN: a binary record's null)."""
    wanted = set(names)
    values = [v for r in records for k, v in r["tests"].items() if k in wanted and v is not None]
    if not values:
        return 0, 0
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return int((np.isinf(arr) | (np.abs(arr) >= SENTINEL_ABS)).sum()), len(arr)
