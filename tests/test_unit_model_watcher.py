"""The model watcher's thread against an in-memory consumer (no broker): stopping and joining,
odd messages on ct.events and ct.models, and which shadow a (re)starting instance takes over."""

from __future__ import annotations

import threading
import time
import types

import orjson
import pytest
from kafka import TopicPartition

import stream_ct.model_watcher as mw
from stream_ct.kafka_io import EVENTS_TOPIC, MODELS_TOPIC

MODELS = TopicPartition(MODELS_TOPIC, 0)
EVENTS = TopicPartition(EVENTS_TOPIC, 0)


def message(tp, key: bytes, value: bytes):
    return types.SimpleNamespace(topic=tp.topic, partition=tp.partition, key=key, value=value)


class FakeConsumer:
    """One partition per topic: the first poll returns the compacted ``ct.models`` log, the next
    ones ``later`` (a list of {tp: [messages]}) in turn."""

    def __init__(self, models: list[tuple[bytes, bytes]], later: list[dict] = ()):
        self.models, self.later, self.read = models, list(later), 0

    def partitions_for_topic(self, topic):
        return {0}

    def assign(self, partitions):
        pass

    def seek_to_beginning(self, *partitions):
        pass

    def seek_to_end(self, *partitions):
        pass

    def end_offsets(self, partitions):
        return {tp: len(self.models) for tp in partitions}

    def position(self, tp):
        return self.read

    def poll(self, timeout_ms):
        if self.read < len(self.models):
            self.read = len(self.models)
            return {MODELS: [message(MODELS, key, value) for key, value in self.models]}
        if self.later:
            return self.later.pop(0)
        time.sleep(timeout_ms / 1000)
        return {}

    def close(self):
        pass


def announcement(version: int) -> bytes:
    return orjson.dumps({"model": "yield", "version": version, "files": {}})


def start_watcher(monkeypatch, consumer: FakeConsumer, parents: dict[int, int] | None = None,
                  on_event=lambda *args, **kwargs: None):
    """A running watcher for model ``yield``; ``parents`` gives each version's meta parent_version."""
    monkeypatch.setattr(mw, "make_consumer", lambda **kwargs: consumer)
    loaded = []

    def load(version, files, with_monitor):
        loaded.append(version)
        meta = {"parent_version": (parents or {}).get(version)}
        return types.SimpleNamespace(version=version, meta=meta), None

    watcher = mw.ModelWatcher("yield", "yield", load, on_event=on_event)
    watcher.start()
    assert watcher.ready.wait(5)
    return watcher, loaded


def stop(watcher) -> None:
    watcher.stop()
    watcher.join(5)
    assert not watcher.is_alive()


def test_a_stopped_watcher_can_be_joined(monkeypatch):
    watcher, _ = start_watcher(monkeypatch, FakeConsumer([]))
    watcher.stop()
    watcher.join(5)  # raised TypeError once the thread had ended: its stop Event hid Thread._stop()
    assert not watcher.is_alive()


@pytest.mark.parametrize("value", [b'"hello"', b"[1, 2]", b"null",
                                   b'{"decision": "promoted", "model": "yield", "version": "v3"}',
                                   b'{"decision": "promoted", "model": "yield", "version": [3]}',
                                   b'{"type": "retrain_decision", "request_id": ["r1"]}'],
                         ids=["string", "list", "null", "version-v3", "version-list", "request-id-list"])
def test_an_odd_event_is_ignored_and_the_watcher_keeps_loading_champions(monkeypatch, value):
    died = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    later = [{}, {EVENTS: [message(EVENTS, b"x", value)]}, {MODELS: [message(MODELS, b"yield", announcement(5))]}]
    watcher, loaded = start_watcher(monkeypatch, FakeConsumer([], later))
    deadline = time.monotonic() + 5
    while not loaded and time.monotonic() < deadline:
        time.sleep(0.02)
    assert died == [] and loaded == [5] and watcher.promoted_version == 0
    assert watcher.is_alive()
    stop(watcher)


@pytest.mark.parametrize("value", [b"not json", b'"hello"', b'{"model": "yield"}', b'{"version": "v3"}'],
                         ids=["not-json", "string", "no-version", "version-v3"])
def test_an_odd_announcement_is_alerted_and_the_watcher_keeps_loading_champions(monkeypatch, value):
    died, alerts = [], []
    monkeypatch.setattr(threading, "excepthook", died.append)
    later = [{}, {MODELS: [message(MODELS, b"yield", value)]}, {MODELS: [message(MODELS, b"yield", announcement(5))]}]
    watcher, loaded = start_watcher(monkeypatch, FakeConsumer([], later), on_event=lambda *a, **kw: alerts.append(kw))
    deadline = time.monotonic() + 5
    while not loaded and time.monotonic() < deadline:
        time.sleep(0.02)
    assert died == [] and loaded == [5] and watcher.is_alive()
    assert [a["kind"] for a in alerts] == ["unreadable_announcement"]
    stop(watcher)


def test_a_key_on_ct_models_that_is_not_utf8_is_ignored_and_the_watcher_keeps_loading_champions(monkeypatch):
    """It ended the watcher (UnicodeDecodeError), and ct.models is compacted: every instance
    started afterwards followed no model at all."""
    died = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    watcher, loaded = start_watcher(monkeypatch, FakeConsumer([(b"\xffyield", announcement(4)),
                                                               (b"yield", announcement(5))]))
    assert died == [] and loaded == [5] and watcher.is_alive()
    stop(watcher)


@pytest.mark.parametrize("shadow, parent, judged, taken", [
    (2, 2, False, False),  # settled long ago: older than the champion
    (3, 2, False, False),  # won its shadow run: it is the champion now
    (4, 3, True, False),   # lost its run: serve marked it judged
    (4, 3, False, True),   # the champion's own challenger, not judged yet
])
def test_a_restarted_instance_takes_over_only_a_shadow_still_to_judge(monkeypatch, shadow, parent, judged, taken):
    # compacted ct.models: the shadow key was written before the champion's (serve checks the parent)
    cleared = [(b"yield.shadow", orjson.dumps({"model": "yield", "version": 4, "judged": True}))] if judged else []
    consumer = FakeConsumer([(b"yield.shadow", announcement(shadow)), (b"yield", announcement(3))] + cleared)
    watcher, _ = start_watcher(monkeypatch, consumer, parents={shadow: parent, 3: 2})
    assert watcher.take().artifact.version == 3
    handed_over = watcher.take_shadow()
    assert (handed_over is not None and handed_over.artifact.version) == (shadow if taken else False)
    stop(watcher)


def test_a_judged_shadow_does_not_take_out_a_newer_one(monkeypatch):
    """Serve marks v4 judged after the worker announced v5 against the same champion: v5 stays."""
    judged = orjson.dumps({"model": "yield", "version": 4, "judged": True})
    consumer = FakeConsumer([(b"yield", announcement(3)), (b"yield.shadow", announcement(5)),
                             (b"yield.shadow", judged)])
    watcher, _ = start_watcher(monkeypatch, consumer, parents={5: 3})
    assert watcher.take().artifact.version == 3 and watcher.take_shadow().artifact.version == 5
    stop(watcher)


def test_a_champion_on_ct_models_at_start_is_marked_so_and_a_later_one_is_not(monkeypatch):
    """Serve judges a champion for rollback only when it saw it deployed."""
    watcher, _ = start_watcher(monkeypatch, FakeConsumer([(b"yield", announcement(3))]))
    assert watcher.take().at_start
    stop(watcher)
    later = [{}, {MODELS: [message(MODELS, b"yield", announcement(4))]}]
    watcher, _ = start_watcher(monkeypatch, FakeConsumer([], later))
    deadline, taken = time.monotonic() + 5, None
    while taken is None and time.monotonic() < deadline:
        taken = watcher.take()
        time.sleep(0.02)
    assert taken.artifact.version == 4 and not taken.at_start
    stop(watcher)


@pytest.mark.parametrize("judging, unjudged", [
    ({"version": 3, "judged": False, "metric_before": {"auc": 0.9}}, True),  # its deployer stopped first
    ({"version": 3, "judged": True}, False),  # an instance judged it
    ({"version": 2, "judged": False, "metric_before": {"auc": 0.9}}, False),  # an earlier champion's check
    (None, False),  # deployed before checks were kept on ct.models
])
def test_a_champion_found_at_start_carries_the_check_no_instance_finished(monkeypatch, judging, unjudged):
    checks = [(b"yield.judging", orjson.dumps({"model": "yield", **judging}))] if judging else []
    watcher, _ = start_watcher(monkeypatch, FakeConsumer([(b"yield", announcement(3))] + checks))
    taken = watcher.take()
    assert taken.at_start and (taken.unjudged is not None) == unjudged
    if unjudged:
        assert taken.unjudged["metric_before"] == {"auc": 0.9}
    stop(watcher)
