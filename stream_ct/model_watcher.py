"""Follow ``ct.models``, ``ct.events`` and ``ct.control`` in a background thread.

The watcher reads the compacted ``ct.models`` topic from its beginning (so a new instance
starts from the current champion), verifies and loads each announced version (key = model
name for the champion, ``<model>.shadow`` for a shadow candidate), builds its drift monitor,
and hands it over through ``take()``; the serving loop swaps between batches. Loading runs
through ``load`` (serve passes a ``ChildLoader``: the work happens in a child process, off
the serving loop's GIL). A version that fails verification is never loaded: a serving
instance keeps its champion, and one that has none yet (it just started) falls back to the
newest earlier version of ``earlier_versions`` that verifies, with a critical alert. It
also reads ``ct.events`` to learn when retrain requests are settled, and ``ct.control``
for manual commands addressed to its consumer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from stream_ct.kafka_io import CONTROL_TOPIC, EVENTS_TOPIC, MODELS_TOPIC, judging_key, make_consumer, shadow_key
from stream_ct.registry import Artifact, IntegrityError

#: ``load(version, expected_sha256s, with_monitor) -> (artifact, monitor)``
Loader = Callable[[int, "dict[str, str] | None", bool], "tuple[Artifact, Any]"]
#: ``earlier_versions(version)``: the versions to fall back to, newest first
EarlierVersions = Callable[[int], "list[int]"]


@dataclass
class LoadedChampion:
    artifact: Artifact
    monitor: Any
    announcement: dict[str, Any]
    at_start: bool = False  # found on ct.models when the watcher started: deployed before this instance ran
    #: for a champion found at start whose post-deploy check no instance finished: the level
    #: before its deployment (``metric_before``) that the check compares with
    unjudged: dict[str, Any] | None = None


class ModelWatcher(threading.Thread):
    def __init__(self, model_name: str, consumer_name: str, load: Loader,
                 on_event: Callable[..., Any], bootstrap: str | None = None,
                 earlier_versions: EarlierVersions = lambda version: []):
        super().__init__(name=f"model-watcher-{model_name}", daemon=True)
        self.model_name, self.consumer_name = model_name, consumer_name
        self.load, self.earlier_versions = load, earlier_versions
        self.on_event, self.bootstrap = on_event, bootstrap
        self._lock = threading.Lock()
        self._pending: LoadedChampion | None = None
        self._shadow: LoadedChampion | None = None
        self._commands: list[dict[str, Any]] = []
        self._settled: set[str] = set()
        self._judging: dict[str, Any] = {}  # the newest post-deploy check on ct.models
        self._stopping = threading.Event()  # not ``_stop``: that would hide Thread._stop(), which join() calls
        self.loaded_version: int | None = None
        self.promoted_version = 0  # the newest promotion seen on ct.events
        self.attempted_version = 0  # the newest champion version a load was tried for
        self.ready = threading.Event()

    def take(self) -> LoadedChampion | None:
        """The newest loaded champion not yet handed over, if any."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def take_shadow(self) -> LoadedChampion | None:
        with self._lock:
            shadow, self._shadow = self._shadow, None
            return shadow

    def take_commands(self) -> list[dict[str, Any]]:
        with self._lock:
            commands, self._commands = self._commands, []
            return commands

    def check_noted(self, version: int) -> bool:
        """Whether ``ct.models`` holds a post-deploy check of ``version`` already (pending or judged)."""
        return self._judging.get("version") == version

    def has_pending(self) -> bool:
        """True while a champion is announced or promoted but not yet handed over."""
        with self._lock:
            return self._pending is not None or self.promoted_version > self.attempted_version

    def settled(self, request_ids: set[str]) -> set[str]:
        """Which of ``request_ids`` have a decision or a failure on ``ct.events``."""
        with self._lock:
            return request_ids & self._settled

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        consumer = make_consumer(group_id=None, bootstrap=self.bootstrap)
        try:
            partitions = [TopicPartition(t, p) for t in (MODELS_TOPIC, EVENTS_TOPIC, CONTROL_TOPIC)
                          for p in sorted(consumer.partitions_for_topic(t) or [0])]
            consumer.assign(partitions)
            models = [tp for tp in partitions if tp.topic == MODELS_TOPIC]
            consumer.seek_to_beginning(*models)
            consumer.seek_to_end(*[tp for tp in partitions if tp.topic != MODELS_TOPIC])
            end = consumer.end_offsets(models)
            latest: dict[str, dict[str, Any]] = {}
            while not self._stopping.is_set():
                for tp, messages in consumer.poll(timeout_ms=200).items():
                    for message in messages:
                        if tp.topic == MODELS_TOPIC:
                            # a key that is not UTF-8 is none of ours; strict decoding ended the thread
                            self._note_model((message.key or b"").decode(errors="replace"), message.value, latest)
                        elif tp.topic == EVENTS_TOPIC:
                            self._note_event(message.value)
                        else:
                            self._note_command(message.value)
                if _caught_up(consumer, models, end):
                    # the champion first: a shadow is judged against it
                    for key in (self.model_name, self.shadow_key):
                        if key in latest:
                            self._load(latest[key], shadow=key == self.shadow_key)
                    latest.clear()
                    self.ready.set()
        finally:
            consumer.close()

    @property
    def shadow_key(self) -> str:
        return shadow_key(self.model_name)

    def _note_model(self, key: str, value: bytes | None, latest: dict[str, dict[str, Any]]) -> None:
        """Keep the newest announcement per key in ``latest``; a shadow marked ``judged`` (serve
        marks it once it has a verdict) takes itself and older shadows out, loaded or not. The
        newest post-deploy check is kept aside for the champion found at start."""
        if key not in (self.model_name, self.shadow_key, judging_key(self.model_name)) or not value:
            return
        announced = self._readable(key, value)
        if announced is None:
            return
        if key == judging_key(self.model_name):
            self._judging = announced
        elif key == self.shadow_key and announced.get("judged"):
            judged = announced["version"]
            if latest.get(key, {}).get("version", judged + 1) <= judged:
                del latest[key]
            with self._lock:
                if self._shadow is not None and self._shadow.artifact.version <= judged:
                    self._shadow = None
        else:
            latest[key] = announced

    def _readable(self, key: str, value: bytes) -> dict[str, Any] | None:
        """An announcement with its version as a number, or None after an alert: an odd value
        on ct.models must not end the watcher (this instance would follow no model again)."""
        try:
            announced = orjson.loads(value)
            announced["version"] = int(announced["version"])
            return announced
        except (ValueError, TypeError, KeyError) as exc:
            self.on_event("alert", severity="error", kind="unreadable_announcement", model=self.model_name,
                          error=f"{MODELS_TOPIC} key {key}: {type(exc).__name__}: {exc}; "
                                f"value {value[:200].decode('utf-8', 'replace')}")
            return None

    def _note_command(self, value: bytes) -> None:
        try:
            command = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if isinstance(command, dict) and command.get("consumer") == self.consumer_name:
            with self._lock:
                self._commands.append(command)

    def _note_event(self, value: bytes) -> None:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return  # not an event of ours; like an odd command, it must not end the watcher
        settled = event.get("type") == "retrain_decision" or (event.get("type") == "retrain_failed"
                                                               and event.get("final"))
        if settled and isinstance(event.get("request_id"), str):  # a list would not hash
            with self._lock:
                self._settled.add(event["request_id"])
        if event.get("decision") == "promoted" and event.get("model") == self.model_name:
            try:
                version = int(event.get("version") or 0)
            except (TypeError, ValueError):
                return  # not a version number: nothing to wait for
            self.promoted_version = max(self.promoted_version, version)

    def _load(self, announcement: dict[str, Any], shadow: bool = False) -> None:
        version = int(announcement["version"])
        if shadow:
            # a starting instance reads the last shadow announced on the compacted ct.models (serve
            # clears the key once a shadow is judged): one not newer than the champion, or with no
            # champion to run beside, was settled already (serve also checks it was trained
            # against the champion it serves)
            if self.loaded_version is None or version <= self.loaded_version:
                return
        else:
            if version == self.loaded_version:
                return
            self.attempted_version = max(self.attempted_version, version)
        loaded = self._try_load(version, announcement, shadow)
        if loaded is None and not shadow and self.loaded_version is None:
            loaded = self._fall_back(version)
        if loaded is None:
            return  # the champion keeps serving
        loaded.at_start = not shadow and not self.ready.is_set()
        if loaded.at_start and self.check_noted(loaded.artifact.version) and not self._judging.get("judged"):
            loaded.unjudged = self._judging
        with self._lock:
            if shadow:
                self._shadow = loaded
            else:
                self._pending = loaded
                self.loaded_version = loaded.artifact.version

    def _try_load(self, version: int, announcement: dict[str, Any], shadow: bool) -> LoadedChampion | None:
        """``version`` loaded, or None after an alert: a tampered artifact is never loaded, and
        a broken one must not stop the watcher."""
        try:
            artifact, monitor = self.load(version, announcement.get("files"), not shadow)
        except IntegrityError as exc:
            self.on_event("alert", severity="critical", kind="checksum_mismatch", model=self.model_name,
                          version=version, error=str(exc))
            return None
        except Exception as exc:
            self.on_event("alert", severity="error", kind="model_load_failed", model=self.model_name,
                          version=version, error=f"{type(exc).__name__}: {exc}")
            return None
        return LoadedChampion(artifact, monitor, announcement)

    def _fall_back(self, failed: int) -> LoadedChampion | None:
        """With no champion yet (this instance just started) and the announced one unusable:
        the newest earlier version that loads, announced to this instance only (the registry's
        pointer and ``ct.models`` stay as they are: ``stream-ct models promote`` makes it
        everyone's)."""
        reason = f"fallback: v{failed} failed to load"
        for version in self.earlier_versions(failed):
            loaded = self._try_load(version, {"version": version, "reason": reason}, shadow=False)
            if loaded is not None:
                self.on_event("alert", severity="critical", kind="champion_fallback", model=self.model_name,
                              version=version, failed_version=failed,
                              error=f"v{failed} could not be loaded; serving v{version} until a verified "
                                    f"version is announced")
                return loaded
        return None


def _caught_up(consumer, partitions, end: dict) -> bool:
    """Whether ``consumer`` has read ``partitions`` up to ``end``; False while the broker is
    away (kafka-python's ``position()`` may ask it, and raise), so the watcher waits it out."""
    try:
        return all(consumer.position(tp) >= end[tp] for tp in partitions)
    except (KafkaConnectionError, KafkaTimeoutError):
        return False
