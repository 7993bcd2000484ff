"""Shared pieces of the speed benchmarks: a broker of their own, simulated topics, a champion.

Every benchmark starts (or reuses) one local Apache Kafka broker on its own port and state
directory (default 127.0.0.1:49092, state in /tmp/stream-ct-bench-49092) so it never touches
a developer's or a test session's broker. ``--keep-broker`` leaves it running for the next
benchmark; otherwise it is stopped at exit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from typing import Any

import numpy as np
import orjson
from kafka.future import Future

from stream_ct.broker import LocalBroker
from stream_ct.config import ConsumerConfig
from stream_ct.simulate import Simulator

BENCH_PORT = 49092


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def broker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=BENCH_PORT, help="port of the benchmark's own broker")
    p.add_argument("--bootstrap", default=None, help="use this running broker instead of starting one")
    p.add_argument("--keep-broker", action="store_true", help="leave the benchmark broker running")


class BenchBroker:
    """``with BenchBroker(args) as bootstrap:`` - a broker for the benchmark, stopped afterwards."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.broker = None

    def __enter__(self) -> str:
        if self.args.bootstrap:
            return self.args.bootstrap
        self.broker = LocalBroker(port=self.args.port, state_dir=f"/tmp/stream-ct-bench-{self.args.port}", heap="768m")
        started = time.monotonic()
        bootstrap = self.broker.start()
        log(f"bench: broker at {bootstrap} ({time.monotonic() - started:.1f} s)")
        return bootstrap

    def __exit__(self, *exc) -> None:
        if self.broker is not None and not self.args.keep_broker:
            self.broker.stop()


def simulate_values(n: int, n_tests: int, seed: int = 0, scenario: str = "none", **params: Any) -> list[bytes]:
    """``n`` simulated part records, serialized as the testers publish them (orjson)."""
    sim = Simulator(scenario=scenario, seed=seed, n_tests=n_tests, **params)
    dumps = orjson.dumps
    return [dumps(rec) for rec in sim.generate(n).records()]


def simulate_records(n: int, n_tests: int, seed: int = 0, **params: Any) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in simulate_values(n, n_tests, seed, **params)]


def publish(topic: str, values: list[bytes], bootstrap: str, partitions: int = 1) -> float:
    """Create ``topic`` fresh and write ``values`` to it (keyed by part); returns seconds."""
    from stream_ct.kafka_io import ensure_topics, make_producer

    ensure_topics({topic: {"partitions": partitions}}, bootstrap)
    producer = make_producer(bootstrap, acks=1, linger_ms=20, batch_size=1024 * 1024)
    started = time.monotonic()
    ts = int(time.time() * 1000)
    for i, v in enumerate(values):
        producer.send(topic, value=v, timestamp_ms=ts + i // 100)
    producer.flush()
    producer.close()
    return time.monotonic() - started


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bench_config(input_topic: str, registry: str, n_tests: int, poll_max_records: int = 2000,
                 estimator: str = "hist_gradient_boosting", **sections: dict[str, Any]) -> ConsumerConfig:
    """The demo's consumer definition (consumers/yield.toml) on a topic and registry of its own."""
    raw: dict[str, Any] = {
        "consumer": {"name": "yield", "input_topic": input_topic, "poll_max_records": poll_max_records,
                     "group_id": unique("bench")},
        "model": {"task": "classification", "target": "passed", "estimator": estimator},
        "drift": {"arl0": 100000, "window": 2000, "stride": 2000, "reference_size": 5000},
        "retrain": {"window_records": 5000, "min_rows": 1000, "min_minority": 20, "holdout_fraction": 0.25,
                    "cooldown_records": 10**9, "timeout_s": 600},
        "gates": {"min_metric": 0.70, "min_improvement": -1.0},
        "registry": {"path": registry},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    raw = {k: v for k, v in raw.items() if v != {}}
    return ConsumerConfig.from_dict(raw, source="benchmark")


def train_champion(config: ConsumerConfig, records: list[dict[str, Any]], reason: str = "benchmark"):
    """Run the retrain job's pure part (fit, gates, drift calibration, registry) on ``records``."""
    from stream_ct.registry import Registry
    from stream_ct.retrain_worker import retrain_request, train_and_judge

    request = retrain_request(config, reason, 0, {0: len(records)})
    return train_and_judge(request, records, Registry(config.registry.path))


class FakeProducer:
    """Stands in for KafkaProducer when a benchmark measures the processing alone."""

    def __init__(self):
        self.sent = 0
        self.acknowledged = Future().success(None)

    def send(self, topic, key=None, value=None, headers=None, timestamp_ms=None, partition=None):
        self.sent += 1
        return self.acknowledged

    def flush(self, timeout=None):
        pass

    def partitions_for(self, topic):
        return {0}


class FakeMessage:
    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(self, topic, partition, offset, timestamp, key, value):
        self.topic, self.partition, self.offset, self.timestamp = topic, partition, offset, timestamp
        self.key, self.value, self.headers = key, value, []


def fake_messages(topic: str, values: list[bytes]) -> list[FakeMessage]:
    ts = int(time.time() * 1000)
    return [FakeMessage(topic, 0, i, ts + i, None, v) for i, v in enumerate(values)]


def in_process_server(config: ConsumerConfig, champion_version: int | None):
    """A ``Server`` without Kafka (fake producer, events kept in memory) with its champion loaded."""
    from stream_ct.events import EventLog
    from stream_ct.outbox import Outbox
    from stream_ct.registry import Registry
    from stream_ct.rolling import RollingMetric
    from stream_ct.serve import Server, build_monitor

    server = Server(config)
    server.producer = FakeProducer()
    server.outbox = Outbox(server.producer)
    server.events = EventLog(server.producer, "bench", config.consumer.name)
    if champion_version is not None:
        artifact = Registry(config.registry.path).load(config.model.name, champion_version)
        server.champion, server.monitor = artifact, build_monitor(config, artifact)
        server.champion_metric = RollingMetric(server.task)
    return server


def tmpdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=f"stream-ct-{prefix}-")


def fmt_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:,.3g}" if isinstance(c, float)
                                            else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")

