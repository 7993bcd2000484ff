"""Unit tests for stream_ct.record: the part record's validation rules and key."""

from __future__ import annotations

import math

import orjson
import pytest

from stream_ct.decode import decode_batch
from stream_ct.record import MISSING_COORD, SENTINEL_ABS, is_sentinel, lot_key, part_key, validate_record, wafer_key


def good(**changes):
    rec = {"lot_id": "L1", "wafer_id": "W01", "part_id": 17, "ts": 1700000000.5,
           "tests": {"1000:VDD": 1.2, "1001:IDD": 3}, "x": 3, "y": -4, "head": 1, "site": 2,
           "tester": "T9", "hard_bin": 1, "soft_bin": 1, "passed": True,
           "limits": {"1000:VDD": {"lo": 1.0, "hi": 1.4, "units": "V"}}}
    for k, v in changes.items():
        if v is KeyError:
            rec.pop(k)
        else:
            rec[k] = v
    return rec


def test_full_record_is_valid():
    assert validate_record(good()) is None


def test_minimal_record_is_valid():
    assert validate_record({"lot_id": "L", "wafer_id": "W", "part_id": "1", "ts": 0, "tests": {"a": 1.0}}) is None


@pytest.mark.parametrize("name", ["lot_id", "wafer_id", "part_id"])
def test_missing_identity_field(name):
    assert validate_record(good(**{name: KeyError})) == f"missing field: {name}"


def test_missing_identity_fields_reported_in_order():
    assert validate_record({}) == "missing field: lot_id"
    assert validate_record({"lot_id": "L1"}) == "missing field: wafer_id"


def test_an_id_past_64_bits_is_refused_saying_to_send_it_as_text():
    """orjson reads 123456789012345678901234567890 as a float, so the reason said the integer
    was not an integer."""
    value = orjson.dumps(good(part_id=0)).replace(b'"part_id":0', b'"part_id":123456789012345678901234567890')
    [(_, reason)] = decode_batch([value])[1]
    assert reason == "field part_id must be a string or integer of at most 64 bits; send long ids as strings"


@pytest.mark.parametrize("name", ["lot_id", "wafer_id", "part_id"])
@pytest.mark.parametrize("value", [True, False, 1.5, None, [], {}])
def test_identity_field_wrong_type(name, value):
    assert validate_record(good(**{name: value})) == f"field {name} must be a string or integer"


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), float("-inf"), True, "1700000000", None, KeyError])
def test_ts_must_be_finite_number(ts):
    assert validate_record(good(ts=ts)) == "field ts must be a finite number (epoch seconds)"


@pytest.mark.parametrize("ts", [0, 1700000000, 1.7e9, -1.0])
def test_ts_numbers_are_valid(ts):
    assert validate_record(good(ts=ts)) is None


@pytest.mark.parametrize("tests", [{}, [], [1.0], "1.0", None, KeyError, 1.0])
def test_tests_must_be_non_empty_object(tests):
    assert validate_record(good(tests=tests)) == "field tests must be a non-empty object of test results"


@pytest.mark.parametrize("value", ["1.0", True, False, [1.0], {"v": 1}])
def test_test_result_wrong_type(value):
    assert validate_record(good(tests={"ok": 1.0, "1000:VDD": value})) == \
        "test '1000:VDD' result must be a number or null"


def test_a_long_test_name_is_cut_in_the_reason():
    """The reason goes out as the DLQ message's ``dlq.reason`` header: a record under 1 MB whose
    0.5 M-character name was quoted whole made a 3 MB dead letter, which kafka-python refused
    (MessageSizeTooLargeError), ending serve at that record at every restart."""
    name = "\x85" * 499_950
    reason = validate_record(good(tests={name: "n/a"}))
    assert reason == f"test {repr(name)[:300]}... result must be a number or null"
    assert len(reason.encode()) < 2000


@pytest.mark.parametrize("value", [None, float("nan"), 9.9e37, -9.9e37, float("inf"), float("-inf"),
                                   SENTINEL_ABS, 0, -5, 2**62])
def test_sentinel_and_null_results_are_valid(value):
    assert validate_record(good(tests={"a": value})) is None


def test_all_null_results_are_valid():
    assert validate_record(good(tests={"a": None, "b": None})) is None


@pytest.mark.parametrize("name", ["x", "y", "head", "site", "hard_bin", "soft_bin"])
@pytest.mark.parametrize("value", [True, 1.0, "3"])
def test_integer_fields_reject_bool_float_str(name, value):
    assert validate_record(good(**{name: value})) == f"field {name} must be an integer"


@pytest.mark.parametrize("name", ["x", "y", "head", "site", "hard_bin", "soft_bin"])
def test_integer_fields_may_be_null_or_absent(name):
    assert validate_record(good(**{name: None})) is None
    assert validate_record(good(**{name: KeyError})) is None


def test_missing_coordinate_sentinel_is_valid():
    assert validate_record(good(x=MISSING_COORD, y=MISSING_COORD)) is None


@pytest.mark.parametrize("name", ["x", "y"])
@pytest.mark.parametrize("value", [32768, -32769, 2**40, -(2**40)])
def test_coordinates_outside_stdf_16_bit_range_are_invalid(name, value):
    """Die ids pack x and y in 16 bits each: a wider coordinate would collide."""
    assert validate_record(good(**{name: value})) == f"field {name} must be an integer from -32768 to 32767"


@pytest.mark.parametrize("value", [-32767, 32767])
def test_coordinates_at_the_16_bit_limits_are_valid(value):
    assert validate_record(good(x=value, y=value)) is None


@pytest.mark.parametrize("passed", [1, 0, "true", 1.0])
def test_passed_must_be_bool(passed):
    assert validate_record(good(passed=passed)) == "field passed must be true or false"


@pytest.mark.parametrize("passed", [True, False, None])
def test_passed_bool_or_null_is_valid(passed):
    assert validate_record(good(passed=passed)) is None


@pytest.mark.parametrize("limits", [[], "lo=1", 1.0, [{"lo": 1}]])
def test_limits_must_be_object(limits):
    assert validate_record(good(limits=limits)) == "field limits must be an object"


@pytest.mark.parametrize("value, name", [([], "list"), ("x", "str"), (1, "int"), (None, "NoneType")])
def test_non_object_record(value, name):
    assert validate_record(value) == f"record is a JSON {name}, not an object"


def test_part_key():
    assert part_key({"lot_id": "L1", "wafer_id": "W01", "part_id": 17}) == "L1/W01/17"
    assert part_key(good()) == "L1/W01/17"


def test_wafer_and_lot_keys_of_plain_ids():
    assert wafer_key(good()) == "L1/W01"
    assert lot_key(good()) == "L1"


def test_ids_containing_the_separator_give_distinct_keys():
    """Labels are joined to predictions by part key: two parts must never share one."""
    first = {"lot_id": "L1/W1", "wafer_id": "7", "part_id": "3"}
    second = {"lot_id": "L1", "wafer_id": "W1/7", "part_id": "3"}
    assert part_key(first) == "L1%2FW1/7/3" and part_key(second) == "L1/W1%2F7/3"
    assert wafer_key(first) != wafer_key(second)


def test_keys_escape_percent_so_an_escaped_id_stays_distinct():
    slash = {"lot_id": "a/b", "wafer_id": "w", "part_id": 1}
    escaped = {"lot_id": "a%2Fb", "wafer_id": "w", "part_id": 1}
    assert part_key(slash) == "a%2Fb/w/1" and part_key(escaped) == "a%252Fb/w/1"
    assert (wafer_key(slash), lot_key(slash)) == ("a%2Fb/w", "a%2Fb")


def test_is_sentinel():
    assert is_sentinel(float("nan")) and is_sentinel(float("inf")) and is_sentinel(-math.inf)
    assert is_sentinel(9.9e37) and is_sentinel(-9.9e37) and is_sentinel(1e30)
    assert not is_sentinel(9.99e29) and not is_sentinel(0.0) and not is_sentinel(-1.5)


@pytest.mark.parametrize("value", ["part", "die", None])
def test_supersedes_names_a_part_or_a_die(value):
    assert validate_record(good(supersedes=value)) is None


@pytest.mark.parametrize("value", ["xy", True, 1])
def test_supersedes_anything_else_is_refused(value):
    assert validate_record(good(supersedes=value)) == "field supersedes must be one of 'part', 'die'"
