"""Record and replay round-trip keys, values, timestamps and headers exactly, on the real broker."""

from __future__ import annotations

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
