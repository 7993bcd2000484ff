"""Unit tests for stream_ct.replay with a stub producer (no broker)."""

from __future__ import annotations

import pytest
from kafka.errors import MessageSizeTooLargeError
from kafka.future import Future

import stream_ct.replay as replay_module
from stream_ct.recording import Message


class StubProducer:
    """Acknowledges every send except those whose value is ``b"too big"``, as a broker would."""

    def __init__(self):
        self.sent = []

    def send(self, topic, **kwargs):
        self.sent.append(kwargs["value"])
        future = Future()
        if kwargs["value"] == b"too big":
            future.failure(MessageSizeTooLargeError("broker rejected record"))
        else:
            future.success(None)
        return future

    def flush(self):  # like kafka-python: waits, never raises for rejected records
        pass

    def close(self):
        pass


@pytest.fixture
def producer(monkeypatch):
    stub = StubProducer()
    monkeypatch.setattr(replay_module, "make_producer", lambda bootstrap: stub)
    return stub


def test_replay_counts_acknowledged_sends(producer):
    assert replay_module.replay([Message(b"k", b"v", 1)] * 3, "t") == 3
    assert producer.sent == [b"v"] * 3


def test_replay_raises_when_the_broker_rejects_a_send(producer):
    messages = [Message(b"k", b"v", 1), Message(b"k", b"too big", 2), Message(b"k", b"too big", 3)]
    with pytest.raises(ValueError, match=r"Kafka rejected 2 of 3 records; first error: .*MessageSizeTooLarge"):
        replay_module.replay(messages, "t")
    assert len(producer.sent) == 3


class NoTopicConsumer:
    """A broker that knows no such topic."""

    closed = False

    def partitions_for_topic(self, topic):
        return None

    def close(self):
        NoTopicConsumer.closed = True


def test_record_of_a_missing_topic_leaves_an_existing_recording_alone(tmp_path, monkeypatch):
    import argparse

    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: NoTopicConsumer())
    kept = tmp_path / "events.jsonl"
    kept.write_bytes(b"yesterday's recording\n")
    args = argparse.Namespace(topic="ct.event", bootstrap_servers=None, follow=0.0, file=str(kept))
    with pytest.raises(ValueError, match="topic 'ct.event' does not exist"):
        replay_module._run_record(args)
    assert kept.read_bytes() == b"yesterday's recording\n" and NoTopicConsumer.closed


def test_a_missing_topic_names_the_broker_asked(monkeypatch):
    # the usual cause is the wrong broker (STREAM_CT_BOOTSTRAP not set), not lost data
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: NoTopicConsumer())
    monkeypatch.setenv("STREAM_CT_BOOTSTRAP", "10.1.2.3:9092")
    with pytest.raises(ValueError, match=r"topic 'ct.events' does not exist at 10.1.2.3:9092; "
                                         r"check --bootstrap-servers or STREAM_CT_BOOTSTRAP"):
        replay_module.record("ct.events")
