"""Unit tests for stream_ct.decode.decode_batch: valid records onward, the rest to the DLQ."""

from __future__ import annotations

import orjson
import pytest

from stream_ct.decode import MAX_RECORD_BYTES, decode_batch

REC = {"lot_id": "L1", "wafer_id": "W1", "part_id": 1, "ts": 1.5, "tests": {"a": 1.0, "b": 9.9e37}}
GOOD = orjson.dumps(REC)


def test_all_valid():
    good, bad = decode_batch([GOOD, GOOD])
    assert bad == []
    assert good == [(0, REC), (1, REC)]


def test_empty_batch():
    assert decode_batch([]) == ([], [])


def test_mixed_batch_preserves_indices_and_reasons():
    values = [
        b"{oops",                                   # 0 not JSON
        GOOD,                                       # 1
        b'{"lot_id": "L1", "a": NaN}',              # 2 NaN literal: orjson refuses it
        None,                                       # 3 tombstone
        b"[1, 2, 3]",                               # 4 array
        GOOD,                                       # 5
        b"x" * (MAX_RECORD_BYTES + 1),              # 6 oversized
        orjson.dumps({**REC, "tests": {}}),         # 7 invalid record
        b'{"lot_id": "\xff"}',                      # 8 not UTF-8
        b"",                                        # 9 empty bytes
        GOOD,                                       # 10
    ]
    good, bad = decode_batch(values)
    assert [i for i, _ in good] == [1, 5, 10]
    assert all(rec == REC for _, rec in good)
    reasons = dict(bad)
    assert sorted(reasons) == [0, 2, 3, 4, 6, 7, 8, 9]
    assert reasons[0].startswith("not JSON: ")
    assert reasons[2].startswith("not JSON: ")
    assert reasons[3] == "empty value (tombstone)"
    assert reasons[4] == "record is a JSON list, not an object"
    assert reasons[6] == f"oversized: {MAX_RECORD_BYTES + 1} bytes > {MAX_RECORD_BYTES}"
    assert reasons[7] == "field tests must be a non-empty object of test results"
    assert reasons[8].startswith("not JSON: ")
    assert reasons[9].startswith("not JSON: ")


@pytest.mark.parametrize("raw", [b"NaN", b'{"a": Infinity}', b'{"ts": 1e400}', b'{"a": 1,}'])
def test_non_standard_json_goes_to_dlq(raw):
    good, bad = decode_batch([raw])
    assert good == []
    assert len(bad) == 1 and bad[0][0] == 0 and bad[0][1].startswith("not JSON: ")


def test_record_exactly_at_size_limit_is_decoded():
    padding = MAX_RECORD_BYTES - len(orjson.dumps({**REC, "pad": ""}))
    raw = orjson.dumps({**REC, "pad": "p" * padding})
    assert len(raw) == MAX_RECORD_BYTES
    good, bad = decode_batch([raw])
    assert bad == [] and good[0][0] == 0


def test_oversized_is_refused_before_parsing():
    raw = orjson.dumps({**REC, "pad": "p" * MAX_RECORD_BYTES})
    good, bad = decode_batch([raw])
    assert good == []
    assert bad == [(0, f"oversized: {len(raw)} bytes > {MAX_RECORD_BYTES}")]


@pytest.mark.parametrize("raw, reason", [
    (b'"a string"', "record is a JSON str, not an object"),
    (b"42", "record is a JSON int, not an object"),
    (b"null", "record is a JSON NoneType, not an object"),
    (b'{"wafer_id": "W"}', "missing field: lot_id"),
])
def test_valid_json_invalid_record(raw, reason):
    assert decode_batch([raw]) == ([], [(0, reason)])


def test_sentinels_survive_decoding():
    good, _ = decode_batch([GOOD])
    assert good[0][1]["tests"]["b"] == 9.9e37


@pytest.mark.parametrize("name, value", [("x", 32768), ("y", -32769)])
def test_a_coordinate_outside_16_bits_is_dead_lettered(name, value):
    """The fast path must refuse what ``validate_record`` refuses: die ids need 16-bit x and y."""
    raw = orjson.dumps({**REC, "x": 1, "y": 1, name: value})
    assert decode_batch([raw]) == ([], [(0, f"field {name} must be an integer from -32768 to 32767")])


@pytest.mark.parametrize("value", ["n/a", "812", True, [812], {"ms": 812}])
def test_a_test_time_that_is_not_a_number_is_dead_lettered(value):
    """The test-time use case learns ``test_time_ms``: serve's ``float()`` of it crashed the
    loop on every restart ("n/a"), or took ``true`` as 1 ms."""
    good, bad = decode_batch([orjson.dumps({**REC, "test_time_ms": value})])
    assert good == [] and bad == [(0, "field test_time_ms must be a number")]


@pytest.mark.parametrize("value", [812, 812.5, None])
def test_a_test_time_may_be_a_number_or_null(value):
    assert decode_batch([orjson.dumps({**REC, "test_time_ms": value})])[1] == []


@pytest.mark.parametrize("value", ["xy", ["part"], {"die": 1}, True])
def test_a_retest_naming_neither_part_nor_die_is_dead_lettered(value):
    """The fast path skipped ``supersedes``: such a record was served, and a list or object
    there made every retrain of its window fail in ``latest_results`` (unhashable)."""
    raw = orjson.dumps({**REC, "supersedes": value})
    assert decode_batch([raw]) == ([], [(0, "field supersedes must be one of 'part', 'die'")])


@pytest.mark.parametrize("value", ["part", "die", None])
def test_a_retest_naming_part_or_die_is_valid(value):
    good, bad = decode_batch([orjson.dumps({**REC, "x": 1, "y": 2, "supersedes": value})])
    assert bad == [] and good[0][1]["supersedes"] == value
