"""The retrain worker: its own process and consumer group on ``ct.retrain``.

For each request it reads the training window back from the input topic by time
(``offsets_for_times``), checks the data, trains a candidate, judges it against the champion
on the same holdout, registers it (passed or not), and announces a promotion on the
compacted ``ct.models`` topic. A request is committed only after it was handled, so a worker
killed mid-training leaves it to the next worker.
"""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from kafka import TopicPartition

from stream_ct.config import ConsumerConfig
from stream_ct.decode import decode_batch
from stream_ct.events import EventLog
from stream_ct.features import feature_matrix, select_features, target_vector
from stream_ct.kafka_io import (MODELS_TOPIC, RETRAIN_TOPIC, ensure_control_topics, make_consumer,
                                make_producer)
from stream_ct.record import part_key
from stream_ct.registry import Registry, code_version
from stream_ct.training import PRIMARY_METRIC, build_estimator, data_quality, evaluate, judge

WORKER_GROUP = "stream-ct-retrain"


def retrain_request(config: ConsumerConfig, reason: str, start_ts_ms: int, end_offsets: dict[int, int],
                    **extra: Any) -> dict[str, Any]:
    """The message a trigger publishes on ``ct.retrain``."""
    return {"request_id": uuid.uuid4().hex, "model": config.model.name, "consumer": config.consumer.name,
            "reason": reason, "config": config.to_dict(), "requested_at": time.time(),
            "window": {"topic": config.consumer.input_topic, "start_ts_ms": int(start_ts_ms),
                       "end_offsets": {str(p): int(o) for p, o in end_offsets.items()}},
            **extra}


def read_window(topic: str, start_ts_ms: int, end_offsets: dict[str, int], bootstrap: str | None = None
                ) -> list[dict[str, Any]]:
    """Valid part records of ``topic`` from ``start_ts_ms`` (by timestamp) up to ``end_offsets``."""
    consumer = make_consumer(group_id=None, bootstrap=bootstrap)
    try:
        partitions = [TopicPartition(topic, int(p)) for p in end_offsets]
        consumer.assign(partitions)
        starts = consumer.offsets_for_times({tp: start_ts_ms for tp in partitions})
        remaining = {}
        for tp in partitions:
            end = end_offsets[str(tp.partition)]
            start = starts[tp].offset if starts[tp] is not None else end
            if start < end:
                consumer.seek(tp, start)
                remaining[tp] = end
        consumer.pause(*[tp for tp in partitions if tp not in remaining])
        records: list[tuple[int, int, dict[str, Any]]] = []
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=1000, max_records=5000).items():
                end = remaining.get(tp)
                if end is None:
                    continue
                in_window = [m for m in messages if m.offset < end]
                valid, _ = decode_batch([m.value for m in in_window])
                records.extend((in_window[i].timestamp, tp.partition, rec) for i, rec in valid)
                if consumer.position(tp) >= end or len(in_window) < len(messages):
                    del remaining[tp]
                    consumer.pause(tp)
        records.sort(key=lambda item: (item[0], item[1]))
        return [rec for _, _, rec in records]
    finally:
        consumer.close()


@dataclass
class Outcome:
    version: int | None
    decision: str  # "promoted" | "rejected" | "skipped"
    gates: list[dict[str, Any]]
    metrics: dict[str, Any]


def train_and_judge(request: dict[str, Any], records: list[dict[str, Any]], registry: Registry) -> Outcome:
    """Everything after the data is read: quality check, fit, gates, registration."""
    config = ConsumerConfig.from_dict(request["config"], source=f"request {request['request_id']}")
    task, target, name = config.model.task, config.model.target, config.model.name
    labeled = [r for r in records if r.get(target) is not None]
    y = target_vector(labeled, target)
    quality = data_quality(task, y, config.retrain.min_rows, config.retrain.min_minority)
    if not quality.passed:
        return Outcome(None, "skipped", [quality.to_dict()], {"rows": len(labeled)})
    names = select_features(labeled, config.features.include, config.features.exclude)
    X = feature_matrix(labeled, names)
    split = int(len(labeled) * (1 - config.retrain.holdout_fraction))
    candidate = build_estimator(task, config.model.estimator).fit(X[:split], y[:split])
    candidate_metrics = evaluate(task, candidate, X[split:], y[split:])

    champion_version = registry.champion(name)
    champion_metrics = None
    if champion_version is not None:
        champion = registry.load(name, champion_version)
        Xc = feature_matrix(labeled[split:], champion.meta["feature_names"])
        champion_metrics = evaluate(task, champion.estimator, Xc, y[split:])
    gates = [quality] + judge(task, candidate_metrics, champion_metrics, config.gates.min_metric,
                              config.gates.min_improvement)
    passed = all(g.passed for g in gates)
    reference = {
        "X": X,
        "groups": np.array([f"{r['lot_id']}/{r['wafer_id']}" for r in labeled]),
        "tester": np.array([str(r.get("tester", "")) for r in labeled]),
        "site": np.array([str(r.get("site", "")) for r in labeled]),
        "fab": np.array([str(r.get("fab", "")) for r in labeled]),
    }
    window = request["window"]
    meta = {
        "task": task, "target": target, "estimator": config.model.estimator, "feature_names": names,
        "primary_metric": PRIMARY_METRIC[task], "metrics": {"candidate": candidate_metrics,
                                                            "champion": champion_metrics},
        "gates": [g.to_dict() for g in gates], "decision": "promoted" if passed else "rejected",
        "parent_version": champion_version, "code_version": code_version(),
        "trigger": {"reason": request["reason"], "request_id": request["request_id"],
                    "signals": request.get("signals", [])},
        "data_window": {"topic": window["topic"], "start_ts_ms": window["start_ts_ms"],
                        "end_offsets": window["end_offsets"], "rows": len(labeled),
                        "rows_train": split, "rows_holdout": len(labeled) - split,
                        "first_key": part_key(labeled[0]), "last_key": part_key(labeled[-1])},
    }
    version = registry.save(name, candidate, reference, meta)
    if passed:
        registry.set_champion(name, version)
    return Outcome(version, meta["decision"], meta["gates"], meta["metrics"])


def announcement(registry: Registry, name: str, version: int, reason: str) -> bytes:
    """The ``ct.models`` value that makes every serve instance load ``version``."""
    meta = registry.meta(name, version)
    return orjson.dumps({"model": name, "version": version, "files": meta["files"],
                         "feature_names": meta["feature_names"], "reason": reason, "at": time.time()})


class RetrainWorker:
    def __init__(self, registry_path: str | None = None, bootstrap: str | None = None,
                 exit_when_idle_s: float | None = None):
        self.registry_path, self.bootstrap = registry_path, bootstrap
        self.exit_when_idle_s = exit_when_idle_s
        self.stopping = False

    def handle(self, request: dict[str, Any], producer, events: EventLog) -> Outcome:
        started = time.monotonic()
        window = request["window"]
        events.emit("retrain_started", request_id=request["request_id"], model=request["model"],
                    reason=request["reason"])
        records = read_window(window["topic"], window["start_ts_ms"], window["end_offsets"], self.bootstrap)
        read_s = time.monotonic() - started
        registry = Registry(self.registry_path or request["config"]["registry"]["path"])
        outcome = train_and_judge(request, records, registry)
        if outcome.decision == "promoted":
            producer.send(MODELS_TOPIC, key=request["model"].encode(),
                          value=announcement(registry, request["model"], outcome.version, request["reason"]))
            producer.flush()  # the announcement is in the log before the decision is
        events.emit("retrain_decision", request_id=request["request_id"], model=request["model"],
                    reason=request["reason"], version=outcome.version, decision=outcome.decision,
                    gates=outcome.gates, metrics=outcome.metrics, rows=len(records),
                    read_seconds=round(read_s, 3), seconds=round(time.monotonic() - started, 3))
        producer.flush()
        return outcome

    def run(self) -> int:
        ensure_control_topics(self.bootstrap)
        producer = make_producer(self.bootstrap)
        events = EventLog(producer, "retrain-worker", consumer="*")
        consumer = make_consumer(RETRAIN_TOPIC, group_id=WORKER_GROUP, bootstrap=self.bootstrap,
                                 max_poll_records=1, max_poll_interval_ms=15 * 60 * 1000)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        idle_since = time.monotonic()
        print("retrain-worker: waiting for requests on ct.retrain", flush=True)
        try:
            while not self.stopping:
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    if self.exit_when_idle_s and time.monotonic() - idle_since > self.exit_when_idle_s:
                        break
                    continue
                for tp, messages in batch.items():
                    for message in messages:
                        self._handle_message(message.value, producer, events)
                        consumer.commit({tp: _offset_after(message)})
                idle_since = time.monotonic()
        finally:
            producer.flush()
            consumer.close()
            producer.close()
        return 0

    def _handle_message(self, value: bytes, producer, events: EventLog) -> None:
        try:
            request = orjson.loads(value)
            outcome = self.handle(request, producer, events)
            print(f"retrain-worker: {request['model']} {request['reason']} -> {outcome.decision}"
                  f" v{outcome.version}", flush=True)
        except Exception as exc:  # a failed retrain is reported; the champion keeps serving
            events.emit("retrain_failed", error=f"{type(exc).__name__}: {exc}",
                        request=value[:2000].decode("utf-8", "replace"))
            producer.flush()
            print(f"retrain-worker: request failed: {type(exc).__name__}: {exc}", flush=True)


def _offset_after(message):
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(message.offset + 1, "", -1)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "retrain-worker", help="run a retrain worker (its own consumer group on ct.retrain)",
        description="Train, gate and register candidates for every retrain request; announce promotions.",
        epilog="example: stream-ct retrain-worker --registry registry")
    p.add_argument("--registry", default=None, help="registry folder (default: the request's [registry] path)")
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                   help="exit after this long without requests (for batch runs and tests)")
    p.set_defaults(func=lambda a: RetrainWorker(a.registry, a.bootstrap_servers, a.exit_when_idle).run())
