"""Unit tests for stream_ct.replay with a stub producer (no broker)."""

from __future__ import annotations

import types

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


class GrowingTopic:
    """A two-partition topic that producers keep writing to: after ``record`` is called, and
    while its first fetch is on the way."""

    def __init__(self):
        self.log = {0: [b"a0", b"a1", b"a2"], 1: [b"b0", b"b1"]}
        self.position_of, self.paused, self.polls = {}, set(), 0

    def partitions_for_topic(self, topic):
        return set(self.log)

    def end_offsets(self, partitions):
        return {tp: len(self.log[tp.partition]) for tp in partitions}

    def assign(self, partitions):
        self.position_of = {tp: 0 for tp in partitions}

    def seek_to_beginning(self, *partitions):
        for tp in partitions:
            self.position_of[tp] = 0

    def poll(self, timeout_ms, max_records):
        self.polls += 1
        if self.polls == 1:
            self.log[1].append(b"b2 (produced during the fetch)")
        out = {}
        for tp, at in self.position_of.items():
            if tp not in self.paused and at < len(self.log[tp.partition]):
                out[tp] = [types.SimpleNamespace(offset=o, key=None, value=v, timestamp=o, headers=[])
                           for o, v in enumerate(self.log[tp.partition][at:], start=at)]
                self.position_of[tp] = len(self.log[tp.partition])
        return out

    def position(self, tp):
        return self.position_of[tp]

    def pause(self, *partitions):
        self.paused.update(partitions)

    def close(self):
        pass


def test_record_stops_at_the_end_offsets_taken_when_it_was_called(monkeypatch):
    """It took them only when the generator first ran, and kept every message a fetch brought,
    so messages produced after 'stream-ct record' started ended up in the recording."""
    topic = GrowingTopic()
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: topic)
    messages = replay_module.record("parts")
    topic.log[0] += [b"a3 (produced after record started)", b"a4"]
    assert [(m.partition, m.value) for m in messages] == [(0, b"a0"), (0, b"a1"), (0, b"a2"), (1, b"b0"), (1, b"b1")]


def test_record_with_follow_keeps_what_was_produced_since(monkeypatch):
    topic = GrowingTopic()
    monkeypatch.setattr(replay_module, "make_consumer", lambda **kw: topic)
    messages = replay_module.record("parts", follow_s=0.01)
    topic.log[0].append(b"a3")
    assert sorted(m.value for m in messages) == [b"a0", b"a1", b"a2", b"a3", b"b0", b"b1",
                                                 b"b2 (produced during the fetch)"]
