"""Decode a polled batch: valid part records onward, everything else to the dead-letter queue.

>>> good, bad = decode_batch([b'{"lot_id":"L","wafer_id":"W","part_id":1,"ts":1,"tests":{"a":1}}', b'{oops'])
>>> len(good), bad[0][0], bad[0][1].split(":")[0]
(1, 1, 'not JSON')
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from stream_ct.record import validate_record

#: A record larger than this is refused whole (a runaway tester program, a wrong topic).
MAX_RECORD_BYTES = 1_000_000


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
        try:
            record = loads(raw)
        except orjson.JSONDecodeError as exc:
            invalid.append((i, f"not JSON: {exc}"))
            continue
        reason = validate_record(record)
        if reason is None:
            valid.append((i, record))
        else:
            invalid.append((i, reason))
    return valid, invalid
