"""Unit tests for stream_ct.recording: byte-exact JSONL recordings of Kafka messages."""

from __future__ import annotations

import base64
import gzip
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_ct.recording import Message, line_to_message, message_to_line, read_recording, write_recording

NOT_UTF8 = b"\xff\xfe\x80 not utf-8 \xc3\x28"


def test_line_layout_for_utf8_message_is_text():
    line = message_to_line(Message(b"L1/W1/7", b'{"a": 1}', 1700000000123, [("source", b"sim")], 0))
    assert orjson.loads(line) == {"timestamp": 1700000000123, "partition": 0, "key": "L1/W1/7",
                                  "value": '{"a": 1}', "headers": [["source", "sim"]]}


def test_line_layout_for_non_utf8_uses_b64_fields():
    line = message_to_line(Message(NOT_UTF8, NOT_UTF8, 5, [("h", NOT_UTF8)], None))
    obj = orjson.loads(line)
    assert "key" not in obj and "value" not in obj
    assert base64.b64decode(obj["key_b64"]) == NOT_UTF8
    assert base64.b64decode(obj["value_b64"]) == NOT_UTF8
    assert obj["headers"] == [["h", {"b64": base64.b64encode(NOT_UTF8).decode()}]]
    assert obj["partition"] is None


@pytest.mark.parametrize("msg", [
    Message(b"k", b"v", 0),
    Message(None, b"v", 1),
    Message(b"k", None, 2),                       # tombstone
    Message(None, None, 3, [], 4),
    Message(NOT_UTF8, NOT_UTF8, 4, [("a", NOT_UTF8), ("b", b"text"), ("a", b"")], 2),
    Message(b"", b"", 5, [("", b"")]),
    Message("é/ü/✓".encode(), '{"t": "µ"}'.encode(), 6),
    Message(b"\x00\x01", b"\n\r\t\"\\", 7),
])
def test_round_trip_single_line(msg):
    back = line_to_message(message_to_line(msg))
    assert back == msg
    assert type(back.key) is type(msg.key) and type(back.value) is type(msg.value)


def test_write_read_round_trip_keeps_order_and_count(tmp_path):
    msgs = [Message(f"k{i}".encode(), NOT_UTF8 + bytes([i]), 1000 + i, [("i", str(i).encode())], i % 3)
            for i in range(50)] + [Message(None, None, 9, [], None)]
    path = tmp_path / "r.jsonl"
    assert write_recording(str(path), msgs) == 51
    assert path.read_bytes().count(b"\n") == 51
    assert list(read_recording(str(path))) == msgs


def test_gzip_path_is_compressed_and_round_trips(tmp_path):
    msgs = [Message(b"k", NOT_UTF8, 1, [("h", NOT_UTF8)], 0), Message(None, b"{}", 2)]
    path = tmp_path / "r.jsonl.gz"
    assert write_recording(str(path), msgs) == 2
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(raw).count(b"\n") == 2
    assert list(read_recording(str(path))) == msgs


def test_blank_lines_are_skipped(tmp_path):
    good = message_to_line(Message(b"k", b"v", 1))
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\n" + good + b"\n   \n" + good + b"\n")
    assert list(read_recording(str(path))) == [Message(b"k", b"v", 1)] * 2


@pytest.mark.parametrize("bad", [b"{oops", b"{}", b'{"timestamp": null}', b'{"timestamp": "x"}', b"123",
                                 b'{"timestamp": 1, "headers": [["h", 5]]}', b'{"timestamp": 1, "key_b64": 5}'])
def test_bad_line_raises_value_error_naming_file_and_line(tmp_path, bad):
    good = message_to_line(Message(b"k", b"v", 1))
    path = tmp_path / "r.jsonl"
    path.write_bytes(good + b"\n\n" + bad + b"\n" + good + b"\n")
    it = read_recording(str(path))
    assert next(it) == Message(b"k", b"v", 1)
    with pytest.raises(ValueError) as exc:
        next(it)
    assert str(exc.value).startswith(f"{path}:3: not a recording line (")


def test_bad_line_in_gzip_names_line(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b"{oops\n"))
    with pytest.raises(ValueError, match=r"r\.jsonl\.gz:1: not a recording line"):
        list(read_recording(str(path)))


def test_null_header_value_is_written_as_null_and_read_back_as_none(tmp_path):
    # Kafka allows a header without a value; kafka-python hands it over as None.
    msg = Message(b"k", b"v", 5, [("trace", None), ("h", b"x")], 0)
    assert orjson.loads(message_to_line(msg))["headers"] == [["trace", None], ["h", "x"]]
    path = tmp_path / "r.jsonl"
    write_recording(str(path), [msg])
    assert list(read_recording(str(path))) == [msg]


def test_truncated_gzip_raises_value_error_naming_file_and_line(tmp_path):
    good = message_to_line(Message(b"k", b"v", 1)) + b"\n"
    packed = gzip.compress(good * 3)
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(packed[:-10])  # the end of the stream is cut off
    with pytest.raises(ValueError, match=r"r\.jsonl\.gz:\d+: corrupt or truncated gzip data \(Compressed"):
        list(read_recording(str(path)))


def test_corrupt_gzip_raises_value_error_naming_file_and_line(tmp_path):
    """zlib.error escaped: replay ended in a traceback and exit code 1."""
    packed = gzip.compress((message_to_line(Message(b"k", b"v", 1)) + b"\n") * 3)
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(packed[:10] + b"\xff" + packed[11:])  # the first deflate block of a reserved type
    with pytest.raises(ValueError, match=r"r\.jsonl\.gz:1: corrupt or truncated gzip data \(Error -3 .*invalid block"):
        list(read_recording(str(path)))


@pytest.mark.parametrize("bad", [b"[1, 2]", b'"text"', b'{"timestamp": 1, "key": 5}'])
def test_bad_line_not_object_raises_value_error(tmp_path, bad):
    path = tmp_path / "r.jsonl"
    path.write_bytes(bad + b"\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1: not a recording line"):
        list(read_recording(str(path)))


@pytest.mark.parametrize("bad", [b'{"timestamp": 1, "value_b64": "QUJD!!"}',
                                 b'{"timestamp": true}', b'{"timestamp": 1.7}'])
def test_malformed_line_is_not_silently_accepted(tmp_path, bad):
    path = tmp_path / "r.jsonl"
    path.write_bytes(bad + b"\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1: not a recording line"):
        list(read_recording(str(path)))


_bytes_or_none = st.none() | st.binary(max_size=64)
_messages = st.builds(
    Message,
    key=_bytes_or_none,
    value=_bytes_or_none,
    timestamp=st.integers(min_value=-1, max_value=2**63 - 1),
    headers=st.lists(st.tuples(st.text(max_size=8), _bytes_or_none), max_size=4),
    partition=st.none() | st.integers(min_value=0, max_value=2**31 - 1),
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_messages, max_size=5), st.booleans())
def test_property_arbitrary_bytes_round_trip_exactly(msgs, gz):
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / ("r.jsonl.gz" if gz else "r.jsonl"))
        assert write_recording(path, msgs) == len(msgs)
        assert list(read_recording(path)) == msgs
    for msg in msgs:
        line = message_to_line(msg)
        assert b"\n" not in line
        assert line_to_message(line) == msg
