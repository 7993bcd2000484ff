"""Hypothesis fuzz of ``stream_ct.decode.decode_batch``: arbitrary bytes and arbitrary JSON values.

Properties: it never raises; every input index ends in exactly one of valid/invalid, in
input order; a valid record is exactly what orjson parsed and passes ``validate_record``; an
invalid one has a non-empty reason; anything over ``MAX_RECORD_BYTES`` is refused whole.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_ct.decode import MAX_RECORD_BYTES, decode_batch
from stream_ct.record import validate_record

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
numbers = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
identity = st.one_of(st.text(max_size=8), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans(),
                     st.none(), numbers, st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2))
# Records that are close to valid, so the validator's branches are all reached.
near_records = st.fixed_dictionaries(
    {},
    optional={"lot_id": identity, "wafer_id": identity, "part_id": identity,
              "ts": st.one_of(numbers, st.text(max_size=4), st.booleans(), st.none()),
              "tests": st.one_of(st.dictionaries(st.text(max_size=8), st.one_of(numbers, st.none(), st.booleans(),
                                                                                st.text(max_size=3)), max_size=4),
                                 st.lists(numbers, max_size=2), st.none()),
              "x": st.one_of(st.integers(-40000, 40000), numbers, st.text(max_size=2), st.booleans()),
              "site": st.one_of(st.integers(0, 16), st.text(max_size=2)),
              "passed": st.one_of(st.booleans(), st.integers(0, 1), st.none(), st.text(max_size=3)),
              "limits": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), json_scalars, max_size=2),
                                  st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2))})


def _encoded(value) -> bytes:
    return orjson.dumps(value)


raw_values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(_encoded),
    near_records.map(_encoded),
    near_records.map(lambda r: _encoded(r)[:-1]),  # truncated
    st.sampled_from([b"NaN", b'{"tests":{"a":NaN}}', b"1e400", b'{"a":Infinity}', b"\xef\xbb\xbf{}", b" {} ",
                     b'{"lot_id":"L","wafer_id":"W","part_id":1,"ts":1,"tests":{"a":9.9e37}}',
                     b'{"lot_id":"L","wafer_id":"W","part_id":123456789012345678901234567890,"ts":1,"tests":{"a":1}}',
                     b'{"lot_id":"L","wafer_id":"W","part_id":1,"ts":1e308,"tests":{"a":-0.0}}']),
)


def _check(values):
    valid, invalid = decode_batch(values)
    indices = [i for i, _ in valid] + [i for i, _ in invalid]
    assert sorted(indices) == list(range(len(values)))  # each exactly once
    assert [i for i, _ in valid] == sorted(i for i, _ in valid)
    assert [i for i, _ in invalid] == sorted(i for i, _ in invalid)
    for i, rec in valid:
        assert values[i] is not None and len(values[i]) <= MAX_RECORD_BYTES
        assert rec == orjson.loads(values[i])
        assert validate_record(rec) is None
    for i, reason in invalid:
        assert isinstance(reason, str) and reason
        if values[i] is None:
            assert reason.startswith("empty value")
        elif len(values[i]) > MAX_RECORD_BYTES:
            assert reason.startswith("oversized")
    return valid, invalid


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_values, max_size=30))
def test_decode_batch_never_raises_and_partitions_the_batch(values):
    _check(values)


@settings(max_examples=300, deadline=None)
@given(near_records)
def test_a_decoded_record_is_valid_exactly_when_validate_record_says_so(rec):
    valid, invalid = _check([orjson.dumps(rec)])
    assert bool(valid) == (validate_record(rec) is None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes(raw):
    _check([raw, None, raw])


def test_size_limit_is_exact():
    head = b'{"lot_id":"L","wafer_id":"W","part_id":1,"ts":1,"tests":{"a":1},"pad":"'
    for size in (MAX_RECORD_BYTES - 1, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1):
        raw = head + b"x" * (size - len(head) - 2) + b'"}'
        assert len(raw) == size
        valid, invalid = _check([raw])
        assert (len(valid), len(invalid)) == ((1, 0) if size <= MAX_RECORD_BYTES else (0, 1))
