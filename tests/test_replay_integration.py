"""Record and replay round-trip keys, values, timestamps and headers exactly, on the real broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from stream_ct.kafka_io import ensure_topics
from stream_ct.recording import Message, read_recording, write_recording
from stream_ct.replay import record, replay

pytestmark = pytest.mark.integration


def test_round_trip_is_exact(tmp_path, kafka_bootstrap, topic):
    original = [
        Message(b"LOT1/W1/1", b'{"a": 1}', 1_700_000_000_123, [("source", b"sim"), ("bin", b"\x00\xff")], None),
        Message(None, b"\xff\xfe not utf-8", 1_700_000_000_124, [], None),
        Message(b"\x80key", b"", 1_600_000_000_000, [("dup", b"1"), ("dup", b"2")], None),
    ] + [Message(f"k{i}".encode(), f"v{i}".encode(), 1_700_000_001_000 + i, [], None) for i in range(500)]
    source = tmp_path / "in.jsonl"
    write_recording(str(source), original)
    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    assert replay(read_recording(str(source)), topic, kafka_bootstrap) == len(original)
    copy = tmp_path / "out.jsonl.gz"
    write_recording(str(copy), record(topic, kafka_bootstrap))
    back = list(read_recording(str(copy)))
    assert [(m.key, m.value, m.timestamp, m.headers) for m in back] == \
           [(m.key, m.value, m.timestamp, m.headers) for m in original]
    assert {m.partition for m in back} == {0}


def test_replay_partitions_grows_a_topic_serve_created_first(tmp_path, kafka_bootstrap, topic, capsys):
    """serve creates its input topic with one partition; `replay --partitions 3` must still give
    the three partitions that three serve instances need (docs/operate.md, Docker Compose)."""
    from kafka import KafkaConsumer

    from stream_ct.cli import main

    ensure_topics({topic: {}}, kafka_bootstrap)  # what serve does at start
    source = tmp_path / "in.jsonl"
    write_recording(str(source), [Message(f"k{i}".encode(), b"v", 1_700_000_000_000 + i) for i in range(30)])
    assert main(["replay", str(source), "--topic", topic, "--partitions", "3",
                 "--bootstrap-servers", kafka_bootstrap]) == 0
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        consumer.close()
    assert f"{topic} had 1 partition; now 3" in capsys.readouterr().out


def _settled_size(path, quiet_s: float = 1.5) -> bool:
    """True once ``path`` holds more than its gzip header and has not grown for ``quiet_s``."""
    before = path.stat().st_size if path.exists() else 0
    time.sleep(quiet_s)
    return 1000 < before == path.stat().st_size


def test_sigterm_stops_record_with_a_whole_recording_and_exit_code_130(tmp_path, kafka_bootstrap, topic):
    """`timeout 600 stream-ct record --follow 30 ... out.jsonl.gz` was killed by the SIGTERM with
    the end of the gzip stream unwritten: replaying the file stopped before its last records."""
    original = [Message(f"k{i}".encode(), os.urandom(500).hex().encode(), 1_700_000_000_000 + i, [], None)
                for i in range(2000)]
    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    replay(original, topic, kafka_bootstrap)
    out = tmp_path / "out.jsonl.gz"
    proc = subprocess.Popen([sys.executable, "-m", "stream_ct", "record", "--topic", topic, "--follow", "60",
                             "--bootstrap-servers", kafka_bootstrap, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _settled_size(out) and time.monotonic() < deadline:  # read all, now following
            assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 130, proc.communicate()
    finally:
        proc.kill()
    assert [m.key for m in read_recording(str(out))] == [m.key for m in original]
    # how far it got: the last line said nothing before
    assert re.search(r"^record: 2,000 records \([\d,]+/s\) stopped$", proc.communicate()[1].decode(), re.M)
