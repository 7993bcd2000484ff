"""The part record: one JSON object per tested part, and its validation.

Identity fields name the part; ``tests`` maps a test key (``"<TEST_NUM>:<TEST_TXT>"`` or a
short name) to a float result; ``limits`` (optional, sent at least once per test program)
maps a test key to ``{"lo", "hi", "units"}``; outcome fields are present when known. A retest
carries ``supersedes``: ``"part"`` (it replaces the earlier part with the same ids) or ``"die"``
(the earlier part at the same ``x``, ``y``; ``stream_ct.retests``).

>>> rec = {"lot_id": "L1", "wafer_id": "W1", "part_id": "7", "ts": 1.0, "tests": {"a": 1.5}}
>>> validate_record(rec) is None
True
>>> part_key(rec)
'L1/W1/7'
>>> part_key({"lot_id": "L1/W1", "wafer_id": "7", "part_id": "3"})
'L1%2FW1/7/3'
>>> validate_record({"lot_id": "L1"})
'missing field: wafer_id'
"""

from __future__ import annotations

import math
from typing import Any

IDENTITY_FIELDS = ("lot_id", "wafer_id", "part_id")
OPTIONAL_IDENTITY = ("x", "y", "head", "site", "tester", "fab", "test_program", "test_program_rev")
OUTCOME_FIELDS = ("hard_bin", "soft_bin", "passed", "test_time_ms")
#: What a retest's ``supersedes`` names: the earlier part with its ids, or the one at its die.
SUPERSEDES = ("part", "die")

#: STDF writers use huge magnitudes (for example 9.9e37) for "no result".
SENTINEL_ABS = 1e30
#: STDF's value for a missing X or Y coordinate.
MISSING_COORD = -32768
#: STDF coordinates are signed 16-bit; die ids rely on it.
COORD_RANGE = range(MISSING_COORD, 32768)


def _key_part(value: Any) -> str:
    """An id as a piece of a message key: ``%`` and the separator ``/`` escaped, so keys of
    different ids differ (an id without either is unchanged)."""
    return str(value).replace("%", "%25").replace("/", "%2F")


def part_key(record: dict[str, Any]) -> str:
    """The message key of a part: ``lot/wafer/part`` (ids escaped, ``_key_part``)."""
    key = f"{record['lot_id']}/{record['wafer_id']}/{record['part_id']}"
    if key.count("/") == 2 and "%" not in key:  # nothing to escape: the common case, fast
        return key
    return f"{_key_part(record['lot_id'])}/{_key_part(record['wafer_id'])}/{_key_part(record['part_id'])}"


def wafer_key(record: dict[str, Any]) -> str:
    """The message key that keeps a wafer's parts in one partition, in order: ``lot/wafer``."""
    key = f"{record['lot_id']}/{record['wafer_id']}"
    if key.count("/") == 1 and "%" not in key:
        return key
    return f"{_key_part(record['lot_id'])}/{_key_part(record['wafer_id'])}"


def lot_key(record: dict[str, Any]) -> str:
    """The message key that keeps a lot's parts in one partition, in order: ``lot``."""
    return _key_part(record["lot_id"])


#: Message keys a publisher may give part records (``--key``).
MESSAGE_KEYS = {"part": part_key, "wafer": wafer_key, "lot": lot_key}


def is_sentinel(value: float) -> bool:
    """True for results that are not measurements: NaN, infinities and huge sentinels."""
    return not math.isfinite(value) or abs(value) >= SENTINEL_ABS


def validate_record(record: Any) -> str | None:
    """Return why ``record`` is not a valid part record, or None when it is.

    Sentinel results (NaN, 9.9e37) are valid here: the record is kept and the value is
    treated as missing downstream. Wrong types are not.
    """
    if not isinstance(record, dict):
        return f"record is a JSON {type(record).__name__}, not an object"
    return _validate_identity(record) or _validate_tests(record.get("tests")) or _validate_other_fields(record)


def validate_fields(record: dict[str, Any]) -> str | None:
    """Why the fields of ``record`` other than ``tests`` are not valid, or None."""
    return _validate_identity(record) or _validate_other_fields(record)


def _validate_identity(record: dict[str, Any]) -> str | None:
    for name in IDENTITY_FIELDS:
        if name not in record:
            return f"missing field: {name}"
        if not isinstance(record[name], (str, int)) or isinstance(record[name], bool):
            value = record[name]
            if isinstance(value, float) and abs(value) >= 2 ** 63:  # JSON readers give such integers as floats
                return f"field {name} must be a string or integer of at most 64 bits; send long ids as strings"
            return f"field {name} must be a string or integer"
    ts = record.get("ts")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
        return "field ts must be a finite number (epoch seconds)"
    return None


#: Characters of a test's quoted name a reason shows (an STDF key's 255-character TEST_TXT
#: whole): the reason goes out as a DLQ header, which must fit Kafka's size limits beside the record.
REASON_NAME_CHARS = 300


def _validate_tests(tests: Any) -> str | None:
    if not isinstance(tests, dict) or not tests:
        return "field tests must be a non-empty object of test results"
    for name, value in tests.items():
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            shown = repr(name)
            if len(shown) > REASON_NAME_CHARS:
                shown = f"{shown[:REASON_NAME_CHARS]}..."
            return f"test {shown} result must be a number or null"
    return None


def _validate_other_fields(record: dict[str, Any]) -> str | None:
    for name in ("x", "y", "head", "site", "hard_bin", "soft_bin"):
        value = record.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"field {name} must be an integer"
    for name in ("x", "y"):
        if record.get(name) is not None and record[name] not in COORD_RANGE:
            return f"field {name} must be an integer from {COORD_RANGE.start} to {COORD_RANGE.stop - 1}"
    passed = record.get("passed")
    if passed is not None and not isinstance(passed, bool):
        return "field passed must be true or false"
    test_time = record.get("test_time_ms")
    if test_time is not None and (not isinstance(test_time, (int, float)) or isinstance(test_time, bool)):
        return "field test_time_ms must be a number"
    limits = record.get("limits")
    if limits is not None and not isinstance(limits, dict):
        return "field limits must be an object"
    if record.get("supersedes") is not None and record["supersedes"] not in SUPERSEDES:
        return f"field supersedes must be one of {', '.join(map(repr, SUPERSEDES))}"
    return None
