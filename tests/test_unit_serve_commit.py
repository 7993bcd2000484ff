"""Serve's offset commit across a broker outage (no broker: a consumer that fails, then works)."""

from __future__ import annotations

import collections

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

import stream_ct.serve as serve_module
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
    server = Server.__new__(Server)  # only _commit's state: counts and the stop flag
    server.counts, server.stopping = collections.Counter(), stopping
    return server


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(serve_module.time, "sleep", lambda s: None)


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
