"""Unit tests for stream_ct.events.EventLog with a fake producer."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import orjson
import pytest
from kafka.errors import KafkaTimeoutError

from stream_ct import events
from stream_ct.events import EventLog, encode_event
from stream_ct.kafka_io import EVENTS_TOPIC


class FakeProducer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))


def test_emit_sends_json_with_base_fields():
    p = FakeProducer()
    log = EventLog(p, source="serve", consumer="yield")
    before = time.time()
    event = log.emit("trigger_check", fire=False, reason="no drift signal")
    after = time.time()
    assert len(p.sent) == 1
    topic, key, value = p.sent[0]
    assert topic == EVENTS_TOPIC == "ct.events"
    assert key == b"trigger_check"
    payload = orjson.loads(value)
    assert payload == event
    assert payload["type"] == "trigger_check"
    assert before <= payload["ts"] <= after
    assert payload["source"] == "serve" and payload["consumer"] == "yield"
    assert payload["host"] == socket.gethostname() and payload["pid"] == os.getpid()
    assert payload["run"] == events.RUN and len(events.RUN) == 12
    assert payload["fire"] is False and payload["reason"] == "no drift signal"


def test_numpy_values_are_serialized():
    p = FakeProducer()
    log = EventLog(p, source="worker", consumer="c", topic="my.events")
    grid = np.arange(6, dtype=np.int32).reshape(2, 3)
    log.emit("gate", auc=np.float64(0.75), rows=np.int64(1200), ok=np.bool_(True), f32=np.float32(0.5),
             vec=np.array([1.5, 2.5]), grid=grid, column=grid[:, 1], nested={"p": [np.float64(0.25)]})
    topic, key, value = p.sent[0]
    assert topic == "my.events"
    payload = orjson.loads(value)
    assert payload["auc"] == 0.75 and payload["rows"] == 1200 and payload["ok"] is True and payload["f32"] == 0.5
    assert payload["vec"] == [1.5, 2.5] and payload["grid"] == [[0, 1, 2], [3, 4, 5]]
    assert payload["column"] == [1, 4]  # not C-contiguous: through the fallback
    assert payload["nested"] == {"p": [0.25]}


def test_event_starts_with_type_and_ts():
    p = FakeProducer()
    event = EventLog(p, source="s", consumer="c").emit("deploy", version=3)
    assert list(event)[:2] == ["type", "ts"]
    assert event["version"] == 3


def test_audit_log_appended(tmp_path):
    audit = tmp_path / "deep" / "dir" / "audit.jsonl"
    p = FakeProducer()
    log = EventLog(p, source="s", consumer="c", audit_path=audit)
    assert audit.parent.is_dir()
    log.emit("a", n=1)
    log.emit("b", n=np.int64(2))
    lines = audit.read_bytes().splitlines()
    assert lines == [v for _, _, v in p.sent]
    assert [orjson.loads(line)["type"] for line in lines] == ["a", "b"]
    # a second log on the same file appends, it does not truncate
    EventLog(FakeProducer(), source="s2", consumer="c", audit_path=str(audit)).emit("c")
    assert [orjson.loads(line)["type"] for line in audit.read_bytes().splitlines()] == ["a", "b", "c"]
    assert audit.read_bytes().endswith(b"\n")


def test_no_audit_file_without_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    EventLog(FakeProducer(), source="s", consumer="c").emit("x")
    assert list(tmp_path.iterdir()) == []


def test_unserializable_value_raises_type_error():
    with pytest.raises(TypeError):
        encode_event({"type": "x", "obj": object()})


def test_nan_is_encoded_as_null():
    assert orjson.loads(encode_event({"v": float("nan"), "a": np.array([np.nan])})) == {"v": None, "a": [None]}


def test_an_audit_log_that_cannot_be_written_is_told_and_the_event_sent_when_asked(tmp_path):
    """Without ``audit_failed`` the error raises, as before; the retrain worker, which appends to
    the audit log of each consumer that asks, goes on (it logs the event it could not append)."""
    (tmp_path / "a-file").write_text("")
    p, failed = FakeProducer(), []
    log = EventLog(p, source="retrain-worker", consumer="*")
    audited = log.with_audit_log(tmp_path / "a-file" / "audit.jsonl", lambda event, exc: failed.append((event, exc)))
    event = audited.emit("retrain_decision", decision="rejected")
    assert [(e, type(exc)) for e, exc in failed] == [(event, NotADirectoryError)]
    assert len(p.sent) == 1 and log.audit_path is None  # the log it was made from keeps none
    (tmp_path / "a-folder.jsonl").mkdir()
    with pytest.raises(IsADirectoryError):
        EventLog(p, source="serve", consumer="yield", audit_path=tmp_path / "a-folder.jsonl").emit("x")


def test_audit_line_is_written_before_the_send_so_a_failed_send_keeps_it(tmp_path):
    """The audit log is the record for when Kafka is away; it was written after the send, so a
    send that raised (buffer full, producer closed) lost the event from the log too."""

    class FailingProducer:
        def send(self, topic, key=None, value=None):
            raise KafkaTimeoutError("Failed to allocate memory within the configured max blocking time")

    audit = tmp_path / "audit.jsonl"
    log = EventLog(FailingProducer(), source="serve", consumer="yield", audit_path=audit)
    with pytest.raises(KafkaTimeoutError):
        log.emit("rollback", model="yield", from_version=3, to_version=2)
    [line] = audit.read_bytes().splitlines()
    assert orjson.loads(line)["type"] == "rollback" and orjson.loads(line)["to_version"] == 2
