"""A compact encoding of the part record: the results as float64, not JSON.

Reading JSON is serve's largest stage at 300 tests and more: orjson parses every test key
and number of every record, and the results are then read out of dicts again. This
encoding carries the results as little-endian float64 and the test keys as one JSON list,
parsed once per test program (the keys' bytes are the cache key), so a record costs a small
header parse and one ``np.frombuffer``, and the batch's results are stacked, not read.

Layout: ``b"CTB1"``, three little-endian uint32 (number of results, bytes of the keys, bytes
of the header), the results, the keys (a JSON list of distinct strings), the header (the
record without ``tests``, a JSON object). A null result travels as NaN (both mean "no
measurement" everywhere downstream). ``decode_batch`` tells the encodings apart by the first
bytes, so one topic may carry both; serve, the retrain worker and every reader of part
records accept either.

>>> rec = {"lot_id": "L1", "wafer_id": "W1", "part_id": 7, "ts": 1.5, "tests": {"vdd": 1.25, "idd": None}}
>>> back = decode(encode(rec))
>>> back["part_id"], dict(back["tests"]), back["tests"].array.tolist()
(7, {'vdd': 1.25, 'idd': nan}, [1.25, nan])
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np
import orjson

from stream_ct.record import validate_fields, validate_record

MAGIC = b"CTB1"
_PREFIX = struct.Struct("<4sIII")
#: Test-key lists kept parsed (one per test program seen); cleared when it grows past this.
MAX_SCHEMAS = 256
_schemas: dict[bytes, tuple[tuple[str, ...], dict[str, int]]] = {}


class BinaryRecordError(ValueError):
    """A value that starts like a binary record but is not a valid one; the text says why."""


class Results(Mapping):
    """A binary record's ``tests``: a read-only mapping over its results (``array``, float64
    in the order of ``names``), so a batch's matrix is stacked without building dicts."""

    __slots__ = ("names", "array", "_index")

    def __init__(self, names: tuple[str, ...], array: np.ndarray, index: dict[str, int]):
        self.names, self.array, self._index = names, array, index

    def __getitem__(self, key: str) -> float:
        return float(self.array[self._index[key]])

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def is_binary(value: bytes) -> bool:
    return value[:4] == MAGIC


def encode(record: dict[str, Any]) -> bytes:
    """The binary form of a part record; ``ValueError`` with ``validate_record``'s reason for a
    record the JSON path would dead-letter (a result ``True`` or ``"1.5"`` is not coerced)."""
    reason = _why_not_encodable(record)
    if reason is not None:
        raise ValueError(f"cannot encode a binary record: {reason}")
    tests = record["tests"]
    values = np.array([math.nan if v is None else v for v in tests.values()], dtype="<f8")
    keys = orjson.dumps(list(tests))
    header = orjson.dumps({k: v for k, v in record.items() if k != "tests"})
    return _PREFIX.pack(MAGIC, len(values), len(keys), len(header)) + values.tobytes() + keys + header


def _why_not_encodable(record: dict[str, Any]) -> str | None:
    """``validate_record``'s reason, the results' types checked in one pass when all are plain."""
    tests = record.get("tests")
    if type(tests) is dict and tests and set(map(type, tests.values())) <= _PLAIN_RESULTS:
        return validate_fields(record)
    return validate_record(record)


_PLAIN_RESULTS = {float, int, type(None)}

#: The encodings a producer of part records can write (``--encoding``).
ENCODERS = {"json": orjson.dumps, "binary": encode}


def add_encoding_argument(parser) -> None:
    """``--encoding json|binary`` for a command that writes part records."""
    parser.add_argument("--encoding", choices=sorted(ENCODERS), default="json",
                        help="record values: JSON (default) or binary (float64 results; faster to serve at "
                             "hundreds of tests, docs/operate.md)")


def decode(value: bytes) -> dict[str, Any]:
    """The part record in a binary value; ``BinaryRecordError`` says what is wrong with it.
    The header's fields are not validated here (``decode_batch`` does)."""
    if len(value) < _PREFIX.size:
        raise BinaryRecordError(f"binary record: {len(value)} bytes, shorter than its {_PREFIX.size}-byte prefix")
    _, n, n_keys, n_header = _PREFIX.unpack_from(value)
    results_end = _PREFIX.size + 8 * n
    keys_end = results_end + n_keys
    if keys_end + n_header != len(value):
        raise BinaryRecordError(f"binary record: {len(value)} bytes, but its prefix announces "
                                f"{keys_end + n_header} ({n} results, {n_keys} bytes of keys, {n_header} of header)")
    keys, index = _keys(value[results_end:keys_end], n)
    try:
        record = orjson.loads(memoryview(value)[keys_end:])
    except orjson.JSONDecodeError as exc:
        raise BinaryRecordError(f"binary record: header is not JSON: {exc}") from None
    if type(record) is not dict or "tests" in record:
        raise BinaryRecordError("binary record: header must be a JSON object without tests")
    record["tests"] = Results(keys, np.frombuffer(value, dtype="<f8", count=n, offset=_PREFIX.size), index)
    return record


def _keys(raw: bytes, n: int) -> tuple[tuple[str, ...], dict[str, int]]:
    known = _schemas.get(raw)
    if known is not None:
        if len(known[0]) != n:
            raise BinaryRecordError(f"binary record: {len(known[0])} test keys for {n} results")
        return known
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BinaryRecordError(f"binary record: test keys are not JSON: {exc}") from None
    if (type(parsed) is not list or len(parsed) != n or not all(type(k) is str for k in parsed)
            or len(set(parsed)) != n):
        raise BinaryRecordError(f"binary record: test keys must be {n} distinct strings, one per result")
    if len(_schemas) >= MAX_SCHEMAS:
        _schemas.clear()
    keys = tuple(parsed)
    known = _schemas[raw] = (keys, {k: i for i, k in enumerate(keys)})
    return known
