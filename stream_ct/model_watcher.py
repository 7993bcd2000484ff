"""Follow ``ct.models`` and retrain outcomes in a background thread; load champions off the hot path.

The watcher reads the compacted ``ct.models`` topic from its beginning (so a new instance
starts from the current champion), verifies and loads each announced version, builds its
drift monitor, and hands it over through ``take()``; the serving loop swaps between batches.
It also reads ``ct.events`` to learn when retrain requests it is waiting for are settled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from kafka import TopicPartition

from stream_ct.kafka_io import EVENTS_TOPIC, MODELS_TOPIC, make_consumer
from stream_ct.registry import Artifact, IntegrityError, Registry

SETTLED_EVENTS = ("retrain_decision", "retrain_failed")


@dataclass
class LoadedChampion:
    artifact: Artifact
    monitor: Any
    announcement: dict[str, Any]


class ModelWatcher(threading.Thread):
    def __init__(self, model_name: str, registry: Registry, build_monitor: Callable[[Artifact], Any],
                 on_event: Callable[..., Any], bootstrap: str | None = None):
        super().__init__(name=f"model-watcher-{model_name}", daemon=True)
        self.model_name, self.registry, self.build_monitor = model_name, registry, build_monitor
        self.on_event, self.bootstrap = on_event, bootstrap
        self._lock = threading.Lock()
        self._pending: LoadedChampion | None = None
        self._settled: set[str] = set()
        self._stop = threading.Event()
        self.loaded_version: int | None = None
        self.ready = threading.Event()

    def take(self) -> LoadedChampion | None:
        """The newest loaded champion not yet handed over, if any."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def has_pending(self) -> bool:
        with self._lock:
            return self._pending is not None

    def settled(self, request_ids: set[str]) -> set[str]:
        """Which of ``request_ids`` have a decision or a failure on ``ct.events``."""
        with self._lock:
            return request_ids & self._settled

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = make_consumer(group_id=None, bootstrap=self.bootstrap)
        try:
            partitions = [TopicPartition(t, p) for t in (MODELS_TOPIC, EVENTS_TOPIC)
                          for p in sorted(consumer.partitions_for_topic(t) or [0])]
            consumer.assign(partitions)
            models = [tp for tp in partitions if tp.topic == MODELS_TOPIC]
            consumer.seek_to_beginning(*models)
            consumer.seek_to_end(*[tp for tp in partitions if tp.topic == EVENTS_TOPIC])
            end = consumer.end_offsets(models)
            latest: dict[str, Any] | None = None
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=200)
                for tp, messages in batch.items():
                    for message in messages:
                        if tp.topic == MODELS_TOPIC:
                            if message.key == self.model_name.encode() and message.value:
                                latest = orjson.loads(message.value)
                        else:
                            self._note_event(message.value)
                caught_up = all(consumer.position(tp) >= end[tp] for tp in models)
                if latest is not None and caught_up:
                    self._load(latest)
                    latest = None
                if caught_up:
                    self.ready.set()
        finally:
            consumer.close()

    def _note_event(self, value: bytes) -> None:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if event.get("type") in SETTLED_EVENTS and event.get("request_id"):
            with self._lock:
                self._settled.add(event["request_id"])

    def _load(self, announcement: dict[str, Any]) -> None:
        version = int(announcement["version"])
        if version == self.loaded_version:
            return
        try:
            artifact = self.registry.load(self.model_name, version, expected=announcement.get("files"))
            monitor = self.build_monitor(artifact)
        except IntegrityError as exc:
            self.on_event("alert", severity="critical", kind="checksum_mismatch", model=self.model_name,
                          version=version, error=str(exc))
            self.loaded_version = version  # do not retry a tampered artifact; the champion keeps serving
            return
        except Exception as exc:  # a broken artifact must not stop the watcher: alert, keep serving
            self.on_event("alert", severity="error", kind="model_load_failed", model=self.model_name,
                          version=version, error=f"{type(exc).__name__}: {exc}")
            self.loaded_version = version
            return
        with self._lock:
            self._pending = LoadedChampion(artifact, monitor, announcement)
        self.loaded_version = version
