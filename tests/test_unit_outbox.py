"""Outbox: records kept until the broker acknowledged them (no broker: futures set by hand)."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

import stream_ct.outbox as outbox_module
from stream_ct.outbox import Outbox


class ScriptedProducer:
    """``send`` answers from ``outcomes[value]`` (a list of errors to fail with, in turn; then
    success); ``flush`` times out ``slow_flushes`` times first."""

    def __init__(self, outcomes=None, slow_flushes=0):
        self.outcomes, self.slow_flushes, self.sent = dict(outcomes or {}), slow_flushes, []

    def send(self, topic, **kw):
        self.sent.append((topic, kw["value"]))
        errors = self.outcomes.get(kw["value"], [])
        return Future().failure(errors.pop(0)) if errors else Future().success(None)

    def flush(self, timeout=None):
        if self.slow_flushes:
            self.slow_flushes -= 1
            raise KafkaTimeoutError("Timeout waiting for future")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(outbox_module.time, "sleep", lambda s: None)


def test_all_acknowledged_first_time():
    producer = ScriptedProducer()
    box = Outbox(producer)
    for v in (b"1", b"2"):
        box.send("p", value=v, key=b"k")
    assert box.flush() and box.pending == [] and box.resent == 0 and len(producer.sent) == 2


def test_expired_and_refused_records_are_sent_again_with_their_arguments():
    producer = ScriptedProducer({b"2": [KafkaTimeoutError("expired"), KafkaConnectionError("refused")]})
    box = Outbox(producer)
    for v in (b"1", b"2", b"3"):
        box.send("p", value=v)
    assert box.flush()
    assert producer.sent == [("p", b"1"), ("p", b"2"), ("p", b"3"), ("p", b"2"), ("p", b"2")]
    assert box.resent == 2 and box.pending == []


def test_stopping_while_records_are_unacknowledged_returns_false():
    stop = []
    producer = ScriptedProducer({b"1": [KafkaTimeoutError("expired")] * 100})
    box = Outbox(producer, should_stop=lambda: bool(stop))
    box.send("p", value=b"1")
    stop.append(True)
    assert box.flush() is False


def test_a_flush_that_times_out_is_waited_for_unless_stopping():
    box = Outbox(ScriptedProducer(slow_flushes=3))
    box.send("p", value=b"1")
    assert box.flush()
    box = Outbox(ScriptedProducer(slow_flushes=3), should_stop=lambda: True)
    box.send("p", value=b"1")
    assert box.flush() is False


def test_errors_kafka_does_not_retry_are_raised():
    box = Outbox(ScriptedProducer({b"big": [MessageSizeTooLargeError("2 MB")]}))
    box.send("p", value=b"big")
    with pytest.raises(MessageSizeTooLargeError):
        box.flush()
