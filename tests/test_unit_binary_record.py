"""Binary part records: the same batch as JSON, in the decoder, the feature matrix and the online
model's input; malformed values get a reason; real STDF parts survive the round trip."""

from __future__ import annotations

import math
import re
import struct

import numpy as np
import orjson
import pytest

from stdf_support import STDF_DIR, needs_data
from stream_ct.binary_record import MAGIC, encode
from stream_ct.decode import decode_batch
from stream_ct.features import Measurements, count_sentinels, measurement_rows, select_features
from stream_ct.record import validate_record
from stream_ct.simulate import Simulator
from stream_ct.stdf.reader import StdfReader

LOT2 = STDF_DIR / "lot2.stdf.gz"


def _same_batch(records: list[dict]) -> None:
    """Decoded from JSON and from binary (every other record binary too): equal everywhere."""
    as_json = [orjson.dumps(r) for r in records]
    as_binary = [encode(r) for r in records]
    mixed = [b if i % 2 else j for i, (j, b) in enumerate(zip(as_json, as_binary))]
    reference, bad = decode_batch(as_json)
    assert not bad
    names = sorted({k for r in records for k in r["tests"]})
    want = Measurements([r for _, r in reference])
    for values in (as_binary, mixed):
        decoded, bad = decode_batch(values)
        assert not bad and [i for i, _ in decoded] == list(range(len(records)))
        for (_, a), (_, b) in zip(decoded, reference):
            assert {k: v for k, v in a.items() if k != "tests"} == {k: v for k, v in b.items() if k != "tests"}
            assert list(a["tests"]) == list(b["tests"])
        parts = [r for _, r in decoded]
        assert select_features(parts) == names  # what the retrain job reads from a window
        assert count_sentinels(parts, names) == count_sentinels([r for _, r in reference], names)
        got = Measurements(parts)
        np.testing.assert_array_equal(got.matrix(names), want.matrix(names))
        assert got.missing == want.missing
        assert measurement_rows([r for _, r in decoded]) == want.rows()


def test_simulated_parts_decode_as_their_json():
    records = list(Simulator(seed=4, n_tests=30).generate(500).records())
    for i, r in enumerate(records[::17]):  # nulls, NaN and sentinels travel too
        r["tests"][next(iter(r["tests"]))] = [None, math.nan, 9.9e37][i % 3]
    _same_batch(records)


@needs_data
def test_real_stdf_parts_decode_as_their_json():
    records = list(StdfReader(LOT2, "lot2"))
    assert len(records) > 700
    _same_batch(records)


PART = {"lot_id": "L", "wafer_id": "W", "part_id": 1, "ts": 1.0, "tests": {"a": 1.0, "b": None}}
REFUSED = {
    "bool result": {**PART, "tests": {"a": True}},
    "str result": {**PART, "tests": {"a": "1.5"}},
    "list result": {**PART, "tests": {"a": [1.0]}},
    "no results": {**PART, "tests": {}},
    "bool x": {**PART, "x": True},
    "str hard_bin": {**PART, "hard_bin": "3"},
    "float site": {**PART, "site": 1.0},
    "x beyond 16 bits": {**PART, "x": 32768},
    "int passed": {**PART, "passed": 1},
    "null part_id": {**PART, "part_id": None},
    "str ts": {**PART, "ts": "1.0"},
}


@pytest.mark.parametrize("record", REFUSED.values(), ids=REFUSED)
def test_the_encoder_refuses_what_the_json_path_dead_letters(record):
    """No coercion: a record that JSON would dead-letter cannot be written as binary either."""
    valid, invalid = decode_batch([orjson.dumps(record)])
    assert not valid and invalid[0][1] == validate_record(record)
    with pytest.raises(ValueError, match=re.escape(invalid[0][1])):
        encode(record)


def _binary(n: int, keys: bytes, header: bytes, values: bytes | None = None) -> bytes:
    values = np.arange(n, dtype="<f8").tobytes() if values is None else values
    return struct.pack("<4sIII", MAGIC, n, len(keys), len(header)) + values + keys + header


HEADER = orjson.dumps({"lot_id": "L", "wafer_id": "W", "part_id": 1, "ts": 1.0})
MALFORMED = [
    (MAGIC + b"\x01", "shorter than its 16-byte prefix"),
    (_binary(2, b'["a","b"]', HEADER) + b"x", "but its prefix announces"),
    (_binary(2, b'["a",', HEADER + b"  "), "test keys are not JSON"),
    (_binary(2, b'["a","b","c"]', HEADER), "test keys must be 2 distinct strings"),
    (_binary(2, b'["a","a"]', HEADER), "test keys must be 2 distinct strings"),
    (_binary(2, b'["a",1]', HEADER), "test keys must be 2 distinct strings"),
    (_binary(2, b'["a","b"]', b"{oops"), "header is not JSON"),
    (_binary(2, b'["a","b"]', orjson.dumps({"lot_id": "L", "tests": {}})), "header must be a JSON object without tests"),
    (_binary(2, b'["a","b"]', b"[1]"), "header must be a JSON object"),
    (_binary(2, b'["a","b"]', orjson.dumps({"lot_id": "L", "wafer_id": "W", "ts": 1.0})), "missing field: part_id"),
    (_binary(0, b"[]", HEADER), "binary record: no results"),
]


def test_known_keys_with_another_number_of_results_are_dead_lettered():
    """The key list is parsed once per program; a later record must still match it."""
    first = _binary(2, b'["k1","k2"]', HEADER)
    valid, invalid = decode_batch([first, _binary(1, b'["k1","k2"]', HEADER), _binary(3, b'["k1","k2"]', HEADER)])
    assert [i for i, _ in valid] == [0]
    assert [(i, reason) for i, reason in invalid] == [(1, "binary record: 2 test keys for 1 results"),
                                                      (2, "binary record: 2 test keys for 3 results")]


@pytest.mark.parametrize("value, reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_a_malformed_binary_record_is_dead_lettered_with_its_reason(value, reason):
    good = encode({"lot_id": "L", "wafer_id": "W", "part_id": 2, "ts": 2.0, "tests": {"a": 1.0}})
    valid, invalid = decode_batch([good, value, good])
    assert [i for i, _ in valid] == [0, 2]
    assert len(invalid) == 1 and invalid[0][0] == 1 and reason in invalid[0][1], invalid


@needs_data
def test_the_producers_write_either_encoding(tmp_path):
    """``simulate --encoding`` and ``stdf convert --encoding``: the same parts either way."""
    from stream_ct.cli import main
    from stream_ct.recording import read_recording

    for command in (["simulate", "--records", "300", "--tests", "12", "--seed", "3"], ["stdf", "convert", str(LOT2)]):
        decoded = {}
        for encoding in ("json", "binary"):
            out = tmp_path / f"{command[0]}-{encoding}.jsonl"
            assert main([*command, "--out", str(out), "--encoding", encoding]) == 0
            values = [m.value for m in read_recording(str(out))]
            assert all(v[:4] == MAGIC for v in values) == (encoding == "binary")
            valid, invalid = decode_batch(values)
            assert not invalid
            decoded[encoding] = [r for _, r in valid]
        names = sorted({k for r in decoded["json"] for k in r["tests"]})
        np.testing.assert_array_equal(Measurements(decoded["binary"]).matrix(names),
                                      Measurements(decoded["json"]).matrix(names))
