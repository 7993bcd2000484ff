"""Retested parts: a record that supersedes an earlier one (STDF PRR ``PART_FLG`` bits 0, 1).

A tester that runs a part's test sequence again marks the repeat: ``"supersedes": "part"``
replaces the earlier part with the same ids (``lot/wafer/part``), ``"die"`` the earlier part
at the same position of the same wafer (``x``, ``y``). STDF says a repeated sequence usually
marks a mistake in the first, so the training window keeps each part's last result.

>>> first = {"lot_id": "L", "wafer_id": "W", "part_id": "1", "x": 3, "y": 4, "passed": False}
>>> again = dict(first, part_id="9", passed=True, supersedes="die")
>>> other = dict(first, part_id="2", x=5)
>>> [r["part_id"] for r in latest_results([first, other, again])]
['2', '9']
"""

from __future__ import annotations

from typing import Any

from stream_ct.record import part_key


def latest_results(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` (in stream order) less every one that a later record supersedes (all earlier
    records of its ids, or of its die); the same list when none supersedes anything."""
    if not any("supersedes" in r for r in records):
        return records
    earlier: dict[tuple, list[int]] = {}  # a part's ids, or its die -> indices of its records so far
    superseded = set()
    for i, rec in enumerate(records):
        keys = {"part": ("part", part_key(rec))}
        if rec.get("x") is not None and rec.get("y") is not None:
            keys["die"] = ("die", rec["lot_id"], rec["wafer_id"], rec["x"], rec["y"])
        replaced = keys.get(rec.get("supersedes"))
        if replaced is not None:
            superseded.update(earlier.pop(replaced, ()))
        for key in keys.values():
            earlier.setdefault(key, []).append(i)
    return [r for i, r in enumerate(records) if i not in superseded]
