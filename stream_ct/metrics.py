"""Prometheus metrics and health endpoints, with the standard library only.

A thread-safe registry renders the text exposition format 0.0.4; ``MetricsServer`` serves it
on ``/metrics`` next to ``/healthz`` (the process loop is alive) and ``/readyz`` (ready for
traffic), from a daemon thread.

>>> m = Metrics()
>>> records = m.counter("demo_records_total", "Records read.", labels=("consumer",))
>>> records.inc(3, consumer="yield")
>>> print(m.render(), end="")
# HELP demo_records_total Records read.
# TYPE demo_records_total counter
demo_records_total{consumer="yield"} 3.0

Serving it (``curl 127.0.0.1:<port>/metrics``)::

    server = MetricsServer(m, port=9108, ready=lambda: True)
    while running:
        server.heartbeat()
        ...
    server.close()
"""

from __future__ import annotations

import collections
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RETRAIN_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: Features per (consumer, detector) kept in ``stream_ct_drift_statistic``.
DRIFT_TOP_FEATURES = 10

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def format_value(v: float) -> str:
    """A sample value as Prometheus writes it: ``1.0``, ``+Inf``, ``-Inf``, ``NaN``."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: tuple[str, ...], lock: threading.Lock):
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"label name {label!r} of {name} is not a valid Prometheus label name")
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._lock = lock
        self._children: dict[tuple[str, ...], Any] = {}

    def _key(self, labels: dict[str, Any]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels ({', '.join(self.labels)}), got ({', '.join(labels)})")
        return tuple(str(labels[n]) for n in self.labels)

    def remove(self, **labels: Any) -> None:
        """Forget one label set (a revoked partition, a feature that left the top list)."""
        with self._lock:
            self._children.pop(self._key(labels), None)

    def label_sets(self) -> list[dict[str, str]]:
        """The label sets that have a value, each as label name -> value."""
        with self._lock:
            return [dict(zip(self.labels, key)) for key in self._children]

    def _samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        return "\n".join(lines + self._samples()) + "\n"


class Counter(_Metric):
    kind = "counter"

    def inc(self, n: float = 1, **labels: Any) -> None:
        if n < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {n})")
        key = self._key(labels)
        with self._lock:
            self._children[key] = self._children.get(key, 0.0) + n

    def value(self, **labels: Any) -> float:
        with self._lock:
            return self._children.get(self._key(labels), 0.0)

    def _samples(self) -> list[str]:
        if not self.labels and not self._children:
            return [f"{self.name} 0.0"]
        return [f"{self.name}{_label_text(self.labels, k)} {format_value(v)}"
                for k, v in sorted(self._children.items())]


class Gauge(Counter):
    kind = "gauge"

    def inc(self, n: float = 1, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            self._children[key] = self._children.get(key, 0.0) + n

    def set(self, v: float, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            self._children[key] = float(v)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Iterable[float], labels: tuple[str, ...],
                 lock: threading.Lock):
        if "le" in labels:
            raise ValueError(f"{name}: 'le' is reserved for histogram buckets")
        super().__init__(name, help, labels, lock)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct numbers, got {list(buckets)}")
        self.buckets = tuple(b for b in bounds if not math.isinf(b))

    def observe(self, v: float, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            child = self._children.setdefault(key, [[0] * len(self.buckets), 0.0, 0])
            for i, bound in enumerate(self.buckets):
                if v <= bound:
                    child[0][i] += 1
                    break
            child[1] += v
            child[2] += 1

    def _samples(self) -> list[str]:
        children = dict(self._children)
        if not self.labels and not children:
            children[()] = [[0] * len(self.buckets), 0.0, 0]
        lines = []
        for key, (counts, total, count) in sorted(children.items()):
            cumulative = 0
            for bound, n in zip(self.buckets, counts):
                cumulative += n
                lines.append(f"{self.name}_bucket{_label_text(self.labels + ('le',), key + (format_value(bound),))}"
                             f" {format_value(cumulative)}")
            lines.append(f"{self.name}_bucket{_label_text(self.labels + ('le',), key + ('+Inf',))}"
                         f" {format_value(count)}")
            lines.append(f"{self.name}_sum{_label_text(self.labels, key)} {format_value(total)}")
            lines.append(f"{self.name}_count{_label_text(self.labels, key)} {format_value(count)}")
        return lines


class Metrics:
    """A registry of metrics; registering the same name again returns the existing metric."""

    def __init__(self):
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}

    def _register(self, cls, name: str, help: str, labels: Iterable[str], **extra) -> Any:
        labels = tuple(labels)
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if type(existing) is not cls or existing.labels != labels:
                    raise ValueError(f"metric {name} is already registered as a {existing.kind} "
                                     f"with labels ({', '.join(existing.labels)})")
                return existing
            metric = cls(name, help, labels=labels, lock=self._lock, **extra)
            self._metrics[name] = metric
            return metric

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        return self._register(Counter, name, help, labels)

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        return self._register(Gauge, name, help, labels)

    def histogram(self, name: str, help: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> Histogram:
        return self._register(Histogram, name, help, labels, buckets=tuple(buckets))

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4, in registration order."""
        with self._lock:
            return "".join(m.render() for m in self._metrics.values())


# -- HTTP ----------------------------------------------------------------------------------


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (``port=0``: any free port).

    ``/healthz`` is 200 while ``heartbeat()`` was called within ``stale_after_s`` (the clock
    starts when the server does), else 503. ``/readyz`` is 200 while ``ready()`` is true.
    """

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0,
                 ready: Callable[[], bool] = lambda: True, stale_after_s: float = 60.0):
        self.metrics, self.ready, self.stale_after_s = metrics, ready, stale_after_s
        self._last_beat = time.monotonic()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, body, ctype = owner._respond(self.path.split("?", 1)[0])
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # scrapes every few seconds would flood the log
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stream-ct-metrics", daemon=True)
        self._thread.start()

    def heartbeat(self) -> None:
        """Call once per loop iteration; ``/healthz`` turns 503 when the calls stop."""
        self._last_beat = time.monotonic()

    def _respond(self, path: str) -> tuple[int, str, str]:
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            return 200, self.metrics.render(), CONTENT_TYPE
        if path == "/healthz":
            age = time.monotonic() - self._last_beat
            if age > self.stale_after_s:
                return 503, f"stale: no heartbeat for {age:.0f} s (limit {self.stale_after_s:.0f} s)\n", text
            return 200, "ok\n", text
        if path == "/readyz":
            try:
                ok = bool(self.ready())
            except Exception as exc:  # a failing readiness probe is "not ready", not a crash
                return 503, f"not ready: {type(exc).__name__}: {exc}\n", text
            return (200, "ready\n", text) if ok else (503, "not ready\n", text)
        return 404, "not found; try /metrics, /healthz or /readyz\n", text

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def add_arguments(parser, default: str = "[events] metrics_port of the consumer definition, else off") -> None:
    """``--metrics-port`` / ``--metrics-host`` for a long-running command; ``default`` says
    where the port comes from without ``--metrics-port``."""
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help=f"serve /metrics, /healthz and /readyz on this port (0 = any free port; "
                             f"default: {default})")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address for the metrics endpoint (0.0.0.0 in a container)")


def start_from_args(args, metrics: Metrics, ready: Callable[[], bool] = lambda: True,
                    stale_after_s: float = 60.0, config_port: int = -1) -> MetricsServer | None:
    """A ``MetricsServer`` on ``--metrics-port``, else on ``config_port`` when >= 0, else None."""
    port = args.metrics_port if args.metrics_port is not None else config_port
    if port is None or port < 0:
        return None
    server = MetricsServer(metrics, args.metrics_host, port, ready, stale_after_s)
    print(f"metrics: http://{server.host}:{server.port}/metrics", flush=True)
    return server


# -- the standard metric sets ----------------------------------------------------------------


class ServeMetrics:
    """The metrics of ``stream-ct serve``; update the attributes directly or through the helpers.

    ``on_event(event)`` keeps the event-driven metrics (drift, triggers, deploys, rollbacks,
    alerts, champion version, model metrics) in step with ``ct.events``; ``batch_done`` and
    ``lag`` cover the per-batch figures.
    """

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic, rate_window_s: float = 10.0):
        m = metrics
        self.records = m.counter("stream_ct_records_total", "Valid part records processed.", ("consumer",))
        self.dlq = m.counter("stream_ct_dlq_total", "Records sent to the dead-letter topic.", ("consumer",))
        self.missing = m.counter("stream_ct_missing_results_total",
                                 "Test results that were null, NaN, inf or a sentinel (|v| >= 1e30), kept out of "
                                 "models and statistics.", ("consumer",))
        self.predictions = m.counter("stream_ct_predictions_total",
                                     "Predictions published, by the model that made them (champion or online).",
                                     ("consumer", "source"))
        self.batch_seconds = m.histogram("stream_ct_batch_seconds", "Time to process one polled batch.",
                                         BATCH_BUCKETS, ("consumer",))
        self.records_per_second = m.gauge("stream_ct_records_per_second",
                                          f"Records processed per second over the last {rate_window_s:g} s.",
                                          ("consumer",))
        self.consumer_lag = m.gauge("stream_ct_consumer_lag", "Messages behind the end of each assigned partition.",
                                    ("consumer", "topic", "partition"))
        self.champion_version = m.gauge("stream_ct_champion_version", "Version of the champion being served.",
                                        ("consumer", "model"))
        self.model_metric = m.gauge("stream_ct_model_metric",
                                    "Rolling metric of the champion on labeled records (auc, f1, mae, ...).",
                                    ("consumer", "model", "metric"))
        self.drift_statistic = m.gauge("stream_ct_drift_statistic",
                                       "Last drift statistic signalled per feature and detector "
                                       f"(the {DRIFT_TOP_FEATURES} most recent features per detector).",
                                       ("consumer", "feature", "detector"))
        self.triggers = m.counter("stream_ct_triggers_total", "Trigger checks, by kind and whether they fired.",
                                  ("consumer", "kind", "fired"))
        self.deploys = m.counter("stream_ct_deploys_total", "Champions hot-swapped in.", ("consumer",))
        self.rollbacks = m.counter("stream_ct_rollbacks_total", "Champions rolled back.", ("consumer",))
        self.alerts = m.counter("stream_ct_alerts_total", "Alerts raised, by kind.", ("consumer", "kind"))
        self.webhook_posts = m.counter("stream_ct_webhook_posts_total",
                                       "Alerts posted to the webhook, by outcome (sent, failed, dropped).",
                                       ("consumer", "outcome"))
        self._clock, self._rate_window_s = clock, rate_window_s
        self._recent: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._drift_features: dict[tuple[str, str], collections.OrderedDict] = collections.defaultdict(
            collections.OrderedDict)

    def start(self, consumer: str, webhook: bool = False) -> None:
        """Expose the consumer's counters at 0 from the start (the webhook's with ``webhook``): a
        series that is born at 1 (the first rollback, the first dead letter) is no increase to
        Prometheus's ``increase()`` and ``rate()``, so an alert on it would miss the first event."""
        for counter in (self.records, self.dlq, self.missing, self.deploys, self.rollbacks):
            counter.inc(0, consumer=consumer)
        for source in ("champion", "online"):
            self.predictions.inc(0, consumer=consumer, source=source)
        for outcome in ("sent", "failed", "dropped") if webhook else ():
            self.webhook_posts.inc(0, consumer=consumer, outcome=outcome)

    def batch_done(self, consumer: str, records: int, seconds: float, dlq: int = 0,
                   predictions: dict[str, int] | None = None, missing: int = 0) -> None:
        """One polled batch: valid records, its processing time, dead letters, predictions by source,
        results that were not measurements."""
        self.records.inc(records, consumer=consumer)
        if dlq:
            self.dlq.inc(dlq, consumer=consumer)
        if missing:
            self.missing.inc(missing, consumer=consumer)
        for source, n in (predictions or {}).items():
            self.predictions.inc(n, consumer=consumer, source=source)
        self.batch_seconds.observe(seconds, consumer=consumer)
        self._rate(consumer, records, seconds)

    def idle(self, consumer: str) -> None:
        """An empty poll: lets ``stream_ct_records_per_second`` fall to 0 when the input stops."""
        self._rate(consumer, 0, 0.0)

    def _rate(self, consumer: str, records: int, seconds: float) -> None:
        now = self._clock()
        recent = self._recent[consumer]
        recent.append((now - seconds, records))  # (batch start, records)
        while len(recent) > 1 and now - recent[1][0] >= self._rate_window_s:
            recent.popleft()
        span = now - recent[0][0]
        total = sum(n for _, n in recent)
        self.records_per_second.set(total / span if span > 0 else 0.0, consumer=consumer)

    def lag(self, consumer: str, kafka_consumer, positions: dict) -> None:
        """Per-partition lag of a kafka-python consumer: its last fetch's high watermark less
        ``positions`` (topic-partition -> the next offset the service reads), no broker round trip
        (kafka-python's ``position()`` may make one, and raise while the broker is away). Keyed by
        topic too: with a labels topic, both topics have a partition 0."""
        assigned = {(tp.topic, str(tp.partition)): tp for tp in kafka_consumer.assignment()}
        for labels in self.consumer_lag.label_sets():
            if labels["consumer"] == consumer and (labels["topic"], labels["partition"]) not in assigned:
                self.consumer_lag.remove(**labels)
        for tp in assigned.values():
            end, position = kafka_consumer.highwater(tp), positions.get(tp)
            if end is None or position is None:
                continue
            self.consumer_lag.set(max(0, end - position), consumer=consumer, topic=tp.topic, partition=tp.partition)

    def on_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Update the event-driven metrics from one ``ct.events`` event; returns the event."""
        consumer, kind = str(event.get("consumer", "")), event.get("type")
        if kind == "drift":
            self._drift(consumer, event)
        elif kind == "trigger_check":
            # serve's events carry no kind: it is the conditions that held ("drift", "drift+performance",
            # "manual"), also when the check was held back (its reason is then e.g. "cooldown: ...")
            held = "+".join(name for name, on in (event.get("conditions") or {}).items() if on)
            self.triggers.inc(consumer=consumer, kind=held or "unknown", fired=str(bool(event.get("fire"))).lower())
        elif kind == "deploy":
            self.deploys.inc(consumer=consumer)
            self._champion(consumer, event)
            self._forget_model_metric(consumer, str(event.get("model", "")))
        elif kind == "rollback":
            self.rollbacks.inc(consumer=consumer)
            self._champion(consumer, event)
        elif kind == "alert":
            self.alerts.inc(consumer=consumer, kind=event.get("kind", "unknown"))
        elif kind in ("post_deploy_metric", "model_metrics"):
            values = event.get("metric") if kind == "post_deploy_metric" else event.get("metrics")
            for name, value in (values or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.model_metric.set(value, consumer=consumer, model=event.get("model", ""), metric=name)
        return event

    def _forget_model_metric(self, consumer: str, model: str) -> None:
        """A new champion's rolling metric starts empty: the one it replaced is not its metric."""
        for labels in self.model_metric.label_sets():
            if (labels["consumer"], labels["model"]) == (consumer, model):
                self.model_metric.remove(**labels)

    def _champion(self, consumer: str, event: dict[str, Any]) -> None:
        """The version a deploy or rollback made champion: serve's rollback says ``to_version``
        (its ``version``-less event left the gauge on the version rolled back from), a deploy
        and ``stream-ct models rollback`` say ``version``."""
        version = event.get("to_version", event.get("version"))
        if version is not None:
            self.champion_version.set(version, consumer=consumer, model=event.get("model", ""))

    def _drift(self, consumer: str, event: dict[str, Any]) -> None:
        detector, statistic = str(event.get("detector", "unknown")), event.get("statistic")
        features = event.get("features") or []
        if isinstance(statistic, dict):
            values = {f: v for f, v in statistic.items() if isinstance(v, (int, float))}
        elif isinstance(statistic, (int, float)):
            values = {f: statistic for f in features}
        else:
            return
        strongest = sorted(values.items(), key=lambda fv: -abs(fv[1]))[:DRIFT_TOP_FEATURES]
        recent = self._drift_features[(consumer, detector)]
        for feature, value in reversed(strongest):  # the strongest ends most recent
            self.drift_statistic.set(value, consumer=consumer, feature=feature, detector=detector)
            recent.pop(feature, None)
            recent[feature] = True
        while len(recent) > DRIFT_TOP_FEATURES:
            feature, _ = recent.popitem(last=False)
            self.drift_statistic.remove(consumer=consumer, feature=feature, detector=detector)


def serve_metrics(metrics: Metrics) -> ServeMetrics:
    """Define the standard ``stream_ct_*`` serve metrics on ``metrics``.

    >>> sm = serve_metrics(Metrics())
    >>> sm.batch_done("yield", records=500, seconds=0.04, dlq=2, predictions={"champion": 500})
    >>> _ = sm.on_event({"type": "deploy", "consumer": "yield", "model": "yield", "version": 3})
    >>> sm.champion_version.value(consumer="yield", model="yield"), sm.records.value(consumer="yield")
    (3.0, 500.0)
    """
    return ServeMetrics(metrics)


#: The decisions ``stream_ct_retrains_total`` counts.
DECISIONS = ("promoted", "shadow", "rejected", "skipped", "failed")


class WorkerMetrics:
    """The metrics of ``stream-ct retrain-worker``; ``on_event`` reads its decisions."""

    def __init__(self, metrics: Metrics):
        self.registry = metrics  # what the worker's /metrics renders
        self.retrains = metrics.counter("stream_ct_retrains_total",
                                        "Retrain requests handled, by decision (promoted, shadow, rejected, skipped, failed).",
                                        ("model", "decision"))
        self.gate_verdicts = metrics.counter("stream_ct_gate_verdicts_total", "Validation gate results.",
                                             ("model", "gate", "passed"))
        self.retrain_seconds = metrics.histogram("stream_ct_retrain_seconds",
                                                 "Time from request to decision (read, train, judge, register).",
                                                 RETRAIN_BUCKETS, ("model",))

    def request_received(self, model: str) -> None:
        """Expose the model's decision counters at 0 before its first decision, so that the
        first rejection or failure is an increase to Prometheus (a series born at 1 is not)."""
        for decision in DECISIONS:
            self.retrains.inc(0, model=model, decision=decision)

    def on_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Count ``retrain_decision`` and final ``retrain_failed`` events; returns the event
        (``retrain_seconds`` is observed by the worker per request, its attempts together)."""
        model = str(event.get("model") or "unknown")
        if event.get("type") == "retrain_decision":
            self.retrains.inc(model=model, decision=event.get("decision", "unknown"))
            for gate in event.get("gates") or []:
                self.gate_verdicts.inc(model=model, gate=gate.get("name", "unknown"),
                                       passed=str(bool(gate.get("passed"))).lower())
        elif event.get("type") == "retrain_failed" and event.get("final", True):  # not a retried attempt
            self.retrains.inc(model=model, decision="failed")
        return event


def worker_metrics(metrics: Metrics) -> WorkerMetrics:
    """Define the standard ``stream_ct_*`` retrain-worker metrics on ``metrics``."""
    return WorkerMetrics(metrics)
