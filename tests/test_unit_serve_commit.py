"""Serve's broker calls across an outage (no broker: a consumer that fails, then works): the offset
commit, and the offsets lookup a retrain request needs."""

from __future__ import annotations

import collections
import types

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

import stream_ct.reconnect as reconnect
from stream_ct.serve import Server


class FlakyConsumer:
    """Raises the given errors on the first commits, then commits."""

    def __init__(self, *errors):
        self.errors, self.commits = list(errors), 0

    def commit(self):
        if self.errors:
            raise self.errors.pop(0)
        self.commits += 1


def _server(stopping=False):
    server = Server.__new__(Server)  # only the state these calls use
    server.counts, server.stopping = collections.Counter(), stopping
    return server


class FlakyOffsets:
    """A consumer whose offset lookups fail with the given errors first; 2 partitions."""

    def __init__(self, *errors):
        self.errors = list(errors)

    def partitions_for_topic(self, topic):
        return {0, 1}

    def beginning_offsets(self, parts):
        if self.errors:
            raise self.errors.pop(0)
        return {tp: 0 for tp in parts}

    def end_offsets(self, parts):
        return {tp: 100 + tp.partition for tp in parts}


class Published(list):
    def __call__(self, reason, start_ts_ms, end_offsets, window_records, **extra):
        self.append((reason, end_offsets, extra))


def _requesting_server(consumer, stopping=False):
    server = _server(stopping)
    server.config = types.SimpleNamespace(consumer=types.SimpleNamespace(input_topic="parts"))
    server.consumer, server.timestamps = consumer, collections.deque([1, 2, 3])
    server._publish_request = Published()
    return server


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(reconnect.time, "sleep", lambda s: None)


def test_commit_waits_out_an_unreachable_broker(capsys):
    consumer = FlakyConsumer(KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("metadata"))
    server = _server()
    server._commit(consumer)
    assert consumer.commits == 1 and server.counts["commit_retries"] == 2
    out = capsys.readouterr().out
    assert "retrying until Kafka is back" in out and "Kafka reachable again" in out


def test_stopping_during_an_outage_leaves_the_batch_uncommitted(capsys):
    consumer = FlakyConsumer(KafkaConnectionError("111 ECONNREFUSED"))
    server = _server(stopping=True)
    server._commit(consumer)
    assert consumer.commits == 0
    assert "read again on restart" in capsys.readouterr().out


def test_other_errors_are_not_swallowed():
    with pytest.raises(ValueError):
        _server()._commit(FlakyConsumer(ValueError("bug")))


def test_retrain_request_waits_for_the_input_offsets(capsys):
    server = _requesting_server(FlakyOffsets(KafkaConnectionError("111 ECONNREFUSED")))
    server._request("manual: check", 3, command_id="c-1")
    assert server._publish_request == [("manual: check", {0: 100, 1: 101}, {"command_id": "c-1"})]
    assert server.counts["read_input_offsets_retries"] == 1
    assert "Kafka reachable again" in capsys.readouterr().out


def test_missing_partition_metadata_counts_as_unreachable():
    consumer = FlakyOffsets()
    consumer.partitions_for_topic = lambda topic: None
    server = _requesting_server(consumer, stopping=True)
    server._request("drift", 3)
    assert server._publish_request == [] and server.counts["read_input_offsets_retries"] == 1


def test_stopping_during_an_outage_says_which_request_was_not_made(capsys):
    server = _requesting_server(FlakyOffsets(KafkaTimeoutError("offsets")), stopping=True)
    server._request("manual: check", 3, command_id="c-2")
    assert server._publish_request == []
    assert "retrain (manual: check) not requested (command_id=c-2)" in capsys.readouterr().out
