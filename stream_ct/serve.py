"""The serving loop: one consumer-group member per process; scale out by partitions.

Per polled batch: decode and validate (bad records to ``<topic>.dlq`` with the reason and
original bytes), predict with the champion (or, before the first champion exists, with the
online model, marked ``source: online``), let the online model learn labeled records, feed the
drift monitor, decide on triggers; then flush every output and only then commit the offsets.
A new champion is swapped in between batches.
"""

from __future__ import annotations

import collections
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from stream_ct.config import ConsumerConfig
from stream_ct.decode import decode_batch
from stream_ct.events import EventLog
from stream_ct.features import feature_matrix, target_vector
from stream_ct.kafka_io import RETRAIN_TOPIC, ensure_control_topics, ensure_topics, make_consumer, make_producer
from stream_ct.model_watcher import ModelWatcher
from stream_ct.online import OnlineModel
from stream_ct.record import SENTINEL_ABS, part_key
from stream_ct.registry import Artifact, Registry
from stream_ct.retrain_worker import retrain_request
from stream_ct.training import PRIMARY_METRIC, metrics_from_scores, score
from stream_ct.triggers import DriftTrigger

#: Labeled predictions kept for a champion's rolling metric.
METRIC_WINDOW = 2000
STRATA = ("tester", "site", "fab")


def build_monitor(config: ConsumerConfig, artifact: Artifact):
    """A drift monitor whose reference is the champion's training window."""
    from stream_ct.drift import DriftMonitor

    ref = artifact.reference
    return DriftMonitor(ref["X"], artifact.meta["feature_names"], reference_groups=ref["groups"],
                        arl0=config.drift.arl0, window=config.drift.window, stride=config.drift.stride)


@dataclass
class RollingMetric:
    """Scores and labels of the last ``size`` labeled predictions of one model version."""

    task: str
    size: int = METRIC_WINDOW
    scores: collections.deque = field(default_factory=collections.deque)
    labels: collections.deque = field(default_factory=collections.deque)
    seen: int = 0

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        keep = ~np.isnan(labels)
        for s, y in zip(scores[keep], labels[keep]):
            self.scores.append(float(s))
            self.labels.append(float(y))
            if len(self.scores) > self.size:
                self.scores.popleft()
                self.labels.popleft()
        self.seen += int(keep.sum())

    def value(self) -> dict[str, float] | None:
        if len(self.scores) < 50:
            return None
        return metrics_from_scores(self.task, np.array(self.scores), np.array(self.labels))


class Server:
    def __init__(self, config: ConsumerConfig, bootstrap: str | None = None,
                 exit_when_idle_s: float | None = None, instance: str = ""):
        self.config, self.bootstrap, self.exit_when_idle_s = config, bootstrap, exit_when_idle_s
        self.instance = instance
        self.task = config.model.task
        self.registry = Registry(config.registry.path)
        self.online = OnlineModel(self.task)
        self.champion: Artifact | None = None
        self.monitor = None
        self.monitor_start = 0
        self.trigger = DriftTrigger(config.retrain.cooldown_records)
        self.position = 0  # valid records seen by this instance
        self.timestamps: collections.deque = collections.deque(
            maxlen=max(config.retrain.window_records, config.drift.reference_size))
        self.end_offsets: dict[int, int] = {}
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.deferred: dict[str, Any] | None = None  # a drift retrain waiting for post-drift data
        self.last_settled_at = 0.0
        self.champion_metric: RollingMetric | None = None
        self.post_deploy_reported = True
        self.counts = collections.Counter()
        self.stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        ensure_control_topics(self.bootstrap)
        ensure_topics({cfg.dlq_topic: {}, cfg.predictions_topic: {}}, self.bootstrap)
        self.producer = make_producer(self.bootstrap)
        self.events = EventLog(self.producer, f"serve{self.instance}", cfg.consumer.name)
        self.watcher = ModelWatcher(cfg.model.name, self.registry, lambda a: build_monitor(cfg, a),
                                    self.events.emit, self.bootstrap)
        self.watcher.start()
        self.watcher.ready.wait(timeout=30)
        consumer = make_consumer(cfg.consumer.input_topic, group_id=cfg.consumer.group_id,
                                 bootstrap=self.bootstrap, max_poll_records=cfg.consumer.poll_max_records)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        idle_since = time.monotonic()
        print(f"serve: {cfg.consumer.name} consuming {cfg.consumer.input_topic} as {cfg.consumer.group_id}",
              flush=True)
        try:
            while not self.stopping:
                self._swap_if_ready()
                batch = consumer.poll(timeout_ms=cfg.consumer.poll_timeout_ms)
                if batch:
                    self._process(batch)
                    self.producer.flush()
                    consumer.commit()
                    idle_since = time.monotonic()
                elif self._idle_done(idle_since):
                    break
        finally:
            self.producer.flush()
            consumer.close()
            self.watcher.stop()
            self.events.emit("serve_stopped", **self.summary())
            self.producer.flush()
            self.producer.close()
        print(f"serve: stopped after {self.position} records ({dict(self.counts)})", flush=True)
        return 0

    def _idle_done(self, idle_since: float) -> bool:
        """With ``exit_when_idle_s``: true once input is idle and nothing is left in flight."""
        if self.exit_when_idle_s is None or time.monotonic() - idle_since < self.exit_when_idle_s:
            return False
        self._settle_requests()
        if self.deferred is not None:
            self._dispatch_deferred(force=True)
            return False
        settled_long_enough = time.monotonic() - self.last_settled_at > 2.0
        return not self.in_flight and settled_long_enough and not self.watcher.has_pending()

    def summary(self) -> dict[str, Any]:
        return {"records": self.position, "counts": dict(self.counts),
                "champion_version": self.champion.version if self.champion else None}

    # -- the batch --------------------------------------------------------------------------

    def _process(self, batch: dict) -> None:
        messages = [m for tp in sorted(batch, key=lambda t: t.partition) for m in batch[tp]]
        for m in messages:
            self.end_offsets[m.partition] = m.offset + 1
        valid, invalid = decode_batch([m.value for m in messages])
        for i, reason in invalid:
            self._dead_letter(messages[i], reason)
        if not valid:
            return
        records = [rec for _, rec in valid]
        sources = [messages[i] for i, _ in valid]
        labels = target_vector(records, self.config.model.target)
        rows = [{k: v for k, v in r["tests"].items() if v is not None and math.isfinite(v) and abs(v) < SENTINEL_ABS}
                for r in records]
        online_scores = self.online.predict_learn(rows, labels)
        if self.champion is not None:
            X = feature_matrix(records, self.champion.meta["feature_names"])
            scores = score(self.task, self.champion.estimator, X)
            self._emit_predictions(records, sources, scores, "champion", self.champion.version)
            self.champion_metric.add(scores, labels)
            self._report_post_deploy()
        else:
            X = None
            self._emit_predictions(records, sources, online_scores, "online", None)
        start = self.position
        self.position += len(records)
        self.timestamps.extend(m.timestamp for m in sources)
        if self.monitor is not None:
            self._detect(X, records, sources, start)
        self._bootstrap_if_needed()
        self._dispatch_deferred()
        if self.in_flight:
            self._settle_requests()

    def _dead_letter(self, message, reason: str) -> None:
        headers = list(message.headers or []) + [
            ("dlq.reason", reason.encode()), ("dlq.topic", message.topic.encode()),
            ("dlq.partition", str(message.partition).encode()), ("dlq.offset", str(message.offset).encode())]
        self.producer.send(self.config.dlq_topic, key=message.key, value=message.value or b"",
                           headers=headers, timestamp_ms=message.timestamp)
        self.counts["dlq"] += 1

    def _emit_predictions(self, records, sources, scores: np.ndarray, source: str, version: int | None) -> None:
        topic, name = self.config.predictions_topic, self.config.model.name
        classify = self.task == "classification"
        for record, message, s in zip(records, sources, scores.tolist()):
            key = part_key(record)
            value = {"key": key, "model": name, "version": version, "source": source, "score": s,
                     "prediction": (s >= 0.5) if classify else s, "partition": message.partition,
                     "offset": message.offset, "ts": record["ts"]}
            self.producer.send(topic, key=message.key or key.encode(), value=orjson.dumps(value),
                               timestamp_ms=message.timestamp)
        self.counts[f"predictions_{source}"] += len(records)

    # -- drift and triggers -----------------------------------------------------------------

    def _detect(self, X, records, sources, start: int) -> None:
        strata = {name: np.array([str(r.get(name, "")) for r in records]) for name in STRATA}
        signals = self.monitor.update(X, strata=strata)
        for s in signals:
            index = self.monitor_start + s.position - start
            message = sources[min(max(index, 0), len(sources) - 1)]
            event = s.to_event()
            event.update(model=self.config.model.name, champion_version=self.champion.version,
                         monitor_position=s.position, position=self.monitor_start + s.position,
                         partition=message.partition, offset=message.offset)
            self.events.emit("drift", **event)
            self.counts["drift_signals"] += 1
        if not signals:
            return
        decision = self.trigger.check(self.position, len(signals), busy=bool(self.in_flight or self.deferred))
        self.events.emit("trigger_check", kind="drift", fire=decision.fire, reason=decision.reason,
                         position=self.position, signals=len(signals))
        if decision.fire:
            self.deferred = {"reason": "drift", "position": self.position,
                             "signals": [s.to_event() for s in signals[:20]]}

    def _dispatch_deferred(self, force: bool = False) -> None:
        """Publish a drift retrain once enough post-drift records have arrived."""
        if self.deferred is None:
            return
        after = self.position - self.deferred["position"]
        needed = self.config.retrain.window_records
        if after < needed and not force:
            return
        window = min(after + self.config.drift.window, len(self.timestamps))
        self._request(self.deferred["reason"], window, signals=self.deferred["signals"])
        self.deferred = None

    def _bootstrap_if_needed(self) -> None:
        """The first champion comes from the same retrain job, on the first window of the stream."""
        if self.champion is not None or self.in_flight or self.watcher.loaded_version is not None:
            return
        if self.position >= self.config.drift.reference_size and not self.counts["bootstrap_requests"]:
            self._request("bootstrap", self.config.drift.reference_size)
            self.counts["bootstrap_requests"] += 1

    def _request(self, reason: str, window_records: int, **extra) -> None:
        window_records = max(1, min(window_records, len(self.timestamps)))
        start_ts = self.timestamps[-window_records]
        request = retrain_request(self.config, reason, start_ts, dict(self.end_offsets), **extra)
        self.producer.send(RETRAIN_TOPIC, key=self.config.model.name.encode(), value=orjson.dumps(request))
        self.in_flight[request["request_id"]] = {"at": time.monotonic(), "reason": reason}
        self.events.emit("retrain_requested", request_id=request["request_id"], reason=reason,
                         model=self.config.model.name, position=self.position, window_records=window_records)
        self.counts["retrain_requests"] += 1

    def _settle_requests(self) -> None:
        done = self.watcher.settled(set(self.in_flight))
        timeout = 2 * self.config.retrain.timeout_s
        for request_id, info in list(self.in_flight.items()):
            if request_id in done:
                del self.in_flight[request_id]
                self.last_settled_at = time.monotonic()
            elif time.monotonic() - info["at"] > timeout:
                del self.in_flight[request_id]
                self.events.emit("alert", severity="warning", kind="retrain_lost", request_id=request_id,
                                 detail=f"no decision within {timeout:.0f} s")

    # -- hot swap ----------------------------------------------------------------------------

    def _swap_if_ready(self) -> None:
        loaded = self.watcher.take()
        if loaded is None:
            return
        previous = self.champion
        before = self.champion_metric.value() if self.champion_metric else None
        self.champion, self.monitor = loaded.artifact, loaded.monitor
        self.monitor_start = self.position
        self.champion_metric = RollingMetric(self.task)
        self.post_deploy_reported = False
        self.counts["deploys"] += 1
        self.events.emit("deploy", model=self.config.model.name, version=self.champion.version,
                         previous_version=previous.version if previous else None, position=self.position,
                         reason=loaded.announcement.get("reason"), metric_before=before,
                         primary_metric=PRIMARY_METRIC[self.task])
        print(f"serve: now serving {self.config.model.name} v{self.champion.version} at record {self.position}",
              flush=True)

    def _report_post_deploy(self) -> None:
        if self.post_deploy_reported or self.champion_metric.seen < METRIC_WINDOW:
            return
        self.post_deploy_reported = True
        self.events.emit("post_deploy_metric", model=self.config.model.name, version=self.champion.version,
                         labeled=self.champion_metric.seen, metric=self.champion_metric.value(),
                         position=self.position)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run a serving instance for a consumer definition",
        description="Consume part records, predict, detect drift and trigger retraining; hot-swap champions.",
        epilog="example: stream-ct serve consumers/yield.toml")
    p.add_argument("config", help="consumer definition (TOML)")
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                   help="exit once the input is idle this long and no retrain is in flight (batch runs, tests)")
    p.add_argument("--instance", default="", help="a name for this instance in events")
    p.set_defaults(func=lambda a: Server(ConsumerConfig.load(a.config), a.bootstrap_servers,
                                         a.exit_when_idle, a.instance).run())
