"""Records sent again: a part's record, identical, a second time (an STDF file published
twice, a producer retrying a send the broker had taken).

A retrain window that holds both copies trains on the part twice and, when the copies
straddle the split, judges the candidate on rows it was trained on. A retest is not a
resend: its results differ, or it is marked (``retests.py``).

>>> part = {"lot_id": "L", "wafer_id": "W", "part_id": "1", "ts": 5.0, "tests": {"1:a": 0.5}}
>>> retest = dict(part, tests={"1:a": 0.7})
>>> len(without_resends([part, dict(part), retest]))
2
>>> binary = dict(part, tests={"1:a": float("nan")})  # a missing result, as a binary record holds it
>>> len(without_resends([binary, dict(binary, tests={"1:a": float("nan")})]))
1
"""

from __future__ import annotations

from typing import Any

import orjson


def without_resends(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` (in stream order) less each one identical to an earlier one; the same list
    when there is none."""
    keys = [(r["lot_id"], r["wafer_id"], r["part_id"], r.get("ts")) for r in records]
    if len(set(keys)) == len(keys):  # no part twice at one time: the common case, fast
        return records
    first: dict[tuple, list[dict[str, Any]]] = {}  # ids and time -> the distinct records so far
    resent = set()
    for i, (key, rec) in enumerate(zip(keys, records)):
        kept = first.setdefault(key, [])
        if kept and _as_sent(rec) in map(_as_sent, kept):
            resent.add(i)
        else:
            kept.append(rec)
    return [r for i, r in enumerate(records) if i not in resent]


def _as_sent(record: dict[str, Any]) -> bytes:
    """A record as comparable bytes (a binary record's missing result is NaN, and NaN != NaN)."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
