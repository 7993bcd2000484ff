"""Decode a polled batch: valid part records onward, everything else to the dead-letter queue.

Each value is a JSON record or a binary one (``stream_ct.binary_record``, told apart by its
first bytes).

>>> good, bad = decode_batch([b'{"lot_id":"L","wafer_id":"W","part_id":1,"ts":1,"tests":{"a":1}}', b'{oops'])
>>> len(good), bad[0][0], bad[0][1].split(":")[0]
(1, 1, 'not JSON')
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import orjson

from stream_ct.binary_record import BinaryRecordError, is_binary
from stream_ct.binary_record import decode as decode_binary
from stream_ct.record import COORD_RANGE, IDENTITY_FIELDS, validate_fields, validate_record

#: A record larger than this is refused whole (a runaway tester program, a wrong topic).
MAX_RECORD_BYTES = 1_000_000


_RESULT_TYPES = frozenset((float, int, type(None)))
_INT_FIELDS = ("x", "y", "head", "site", "hard_bin", "soft_bin")


def _surely_valid(record: Any) -> bool:
    """True only if ``validate_record`` would accept ``record``; checks exact types (what orjson
    builds) with C-level loops (one ``set(map(type, ...))`` over the results instead of a Python
    step per test). False means "ask ``validate_record``", which gives the reason."""
    if type(record) is not dict:
        return False
    get = record.get
    for name in IDENTITY_FIELDS:
        kind = type(get(name))
        if kind is not str and kind is not int:
            return False
    ts = get("ts")
    if (type(ts) is not float and type(ts) is not int) or not math.isfinite(ts):
        return False
    tests = get("tests")
    if type(tests) is not dict or not tests or not _RESULT_TYPES.issuperset(map(type, tests.values())):
        return False
    for name in _INT_FIELDS:
        value = get(name)
        if value is not None and type(value) is not int:
            return False
    for name in ("x", "y"):
        value = get(name)
        if value is not None and value not in COORD_RANGE:
            return False
    passed, limits, test_time = get("passed"), get("limits"), type(get("test_time_ms"))
    return ((passed is None or type(passed) is bool) and (limits is None or type(limits) is dict)
            and (test_time is int or test_time is float or test_time is type(None))
            and get("supersedes") is None)  # a retest: validate_record checks what it names


def decode_batch(values: Sequence[bytes | None]) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """Return ``(valid, invalid)``: ``[(index, record)]`` and ``[(index, reason)]`` by batch index."""
    valid: list[tuple[int, dict[str, Any]]] = []
    invalid: list[tuple[int, str]] = []
    loads = orjson.loads
    for i, raw in enumerate(values):
        if raw is None:
            invalid.append((i, "empty value (tombstone)"))
            continue
        if len(raw) > MAX_RECORD_BYTES:
            invalid.append((i, f"oversized: {len(raw)} bytes > {MAX_RECORD_BYTES}"))
            continue
        if is_binary(raw):
            try:
                record = decode_binary(raw)
            except BinaryRecordError as exc:
                invalid.append((i, str(exc)))
                continue
            reason = validate_fields(record) or (None if len(record["tests"]) else "binary record: no results")
            if reason is None:
                valid.append((i, record))
            else:
                invalid.append((i, reason))
            continue
        try:
            record = loads(raw)
        except orjson.JSONDecodeError as exc:
            invalid.append((i, f"not JSON: {exc}"))
            continue
        if _surely_valid(record):
            valid.append((i, record))
            continue
        reason = validate_record(record)
        if reason is None:
            valid.append((i, record))
        else:
            invalid.append((i, reason))
    return valid, invalid
