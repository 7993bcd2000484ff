"""Prometheus registry, text format and the metrics/health HTTP server."""

from __future__ import annotations

import time
import types
import urllib.error
import urllib.request

import pytest
from kafka import TopicPartition

from stream_ct.events import EventLog
from stream_ct.metrics import Metrics, MetricsServer, serve_metrics, worker_metrics

DRIFT_ONLY = {"drift": True, "performance": False, "schedule": False}


def test_render_counter_gauge_histogram_exact_text():
    m = Metrics()
    c = m.counter("t_records_total", "Records read.", labels=("consumer",))
    g = m.gauge("t_lag", "Lag per partition.", labels=("consumer", "partition"))
    h = m.histogram("t_batch_seconds", "Batch time.", buckets=(0.1, 1.0), labels=("consumer",))
    m.counter("t_unlabeled_total", "Help with \\ backslash\nand newline.")
    c.inc(consumer="b")
    c.inc(2, consumer='a"q\\x\ny')
    g.set(7, consumer="a", partition=1)
    g.set(-1.5, consumer="a", partition=0)
    for v in (0.05, 0.5, 0.5, 3.0):
        h.observe(v, consumer="a")
    assert m.render() == (
        '# HELP t_records_total Records read.\n'
        '# TYPE t_records_total counter\n'
        't_records_total{consumer="a\\"q\\\\x\\ny"} 2.0\n'
        't_records_total{consumer="b"} 1.0\n'
        '# HELP t_lag Lag per partition.\n'
        '# TYPE t_lag gauge\n'
        't_lag{consumer="a",partition="0"} -1.5\n'
        't_lag{consumer="a",partition="1"} 7.0\n'
        '# HELP t_batch_seconds Batch time.\n'
        '# TYPE t_batch_seconds histogram\n'
        't_batch_seconds_bucket{consumer="a",le="0.1"} 1.0\n'
        't_batch_seconds_bucket{consumer="a",le="1.0"} 3.0\n'
        't_batch_seconds_bucket{consumer="a",le="+Inf"} 4.0\n'
        't_batch_seconds_sum{consumer="a"} 4.05\n'
        't_batch_seconds_count{consumer="a"} 4.0\n'
        '# HELP t_unlabeled_total Help with \\\\ backslash\\nand newline.\n'
        '# TYPE t_unlabeled_total counter\n'
        't_unlabeled_total 0.0\n'
    )


def test_unlabeled_histogram_renders_zero_buckets_and_special_values():
    m = Metrics()
    m.histogram("t_h", "H.", buckets=(1,))
    g = m.gauge("t_g", "G.", labels=("k",))
    g.set(float("inf"), k="p")
    g.set(float("nan"), k="n")
    text = m.render()
    assert 't_h_bucket{le="1.0"} 0.0\nt_h_bucket{le="+Inf"} 0.0\nt_h_sum 0.0\nt_h_count 0.0\n' in text
    assert 't_g{k="n"} NaN\nt_g{k="p"} +Inf\n' in text


def test_registry_rejects_misuse():
    m = Metrics()
    c = m.counter("t_total", "T.", labels=("consumer",))
    assert m.counter("t_total", "T.", labels=("consumer",)) is c
    with pytest.raises(ValueError, match="already registered"):
        m.gauge("t_total", "T.", labels=("consumer",))
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(model="x")
    with pytest.raises(ValueError, match="only goes up"):
        c.inc(-1, consumer="a")
    with pytest.raises(ValueError, match="not a valid Prometheus name"):
        m.counter("bad-name", "B.")
    with pytest.raises(ValueError, match="reserved"):
        m.histogram("t_h", "H.", buckets=(1,), labels=("le",))


def test_serve_metrics_from_events_and_batches():
    clock = iter([100.0, 101.0, 112.0])
    sm = serve_metrics(Metrics())
    sm._clock = lambda: next(clock)
    sm.batch_done("yield", records=1000, seconds=0.5, dlq=3, predictions={"online": 1000})
    assert sm.records_per_second.value(consumer="yield") == pytest.approx(2000.0)
    sm.batch_done("yield", records=500, seconds=0.5, predictions={"champion": 500})
    assert sm.records_per_second.value(consumer="yield") == pytest.approx(1500 / 1.5)
    sm.idle("yield")  # 12 s later the old batches have left the 10 s window
    assert sm.records_per_second.value(consumer="yield") == pytest.approx(500 / 11.5)

    events = [
        {"type": "deploy", "consumer": "yield", "model": "yield", "version": 2},
        {"type": "trigger_check", "consumer": "yield", "fire": True, "reason": "drift", "conditions": DRIFT_ONLY,
         "position": 5000},
        {"type": "trigger_check", "consumer": "yield", "fire": False, "conditions": DRIFT_ONLY, "position": 5200,
         "reason": "cooldown: 200 records since the last retrain < 10000"},
        {"type": "alert", "consumer": "yield", "kind": "retrain_lost"},
        {"type": "rollback", "consumer": "yield", "model": "yield", "version": 1},
        {"type": "post_deploy_metric", "consumer": "yield", "model": "yield", "metric": {"auc": 0.91, "f1": 0.8}},
        {"type": "drift", "consumer": "yield", "detector": "ks", "features": ["a", "b"],
         "statistic": {"a": 0.2, "b": 0.3}},
        {"type": "drift", "consumer": "yield", "detector": "cusum", "features": ["c"], "statistic": 14.0},
    ]
    for e in events:
        assert sm.on_event(e) is e
    assert sm.champion_version.value(consumer="yield", model="yield") == 1.0
    assert sm.deploys.value(consumer="yield") == sm.rollbacks.value(consumer="yield") == 1.0
    assert sm.triggers.value(consumer="yield", kind="drift", fired="true") == 1.0
    assert sm.triggers.value(consumer="yield", kind="drift", fired="false") == 1.0
    assert sm.alerts.value(consumer="yield", kind="retrain_lost") == 1.0
    assert sm.model_metric.value(consumer="yield", model="yield", metric="auc") == 0.91
    assert sm.drift_statistic.value(consumer="yield", feature="b", detector="ks") == 0.3
    assert sm.drift_statistic.value(consumer="yield", feature="c", detector="cusum") == 14.0
    assert sm.dlq.value(consumer="yield") == 3.0
    assert sm.predictions.value(consumer="yield", source="champion") == 500.0


def test_model_metric_of_a_replaced_champion_is_not_the_new_one_s():
    """After a swap serve's rolling metric starts empty (values again after 50 labels and the next
    model_metrics event); the gauge kept the replaced champion's degraded AUC under the new one,
    so an alert on it went on firing after the retrain that answered it."""
    sm = serve_metrics(Metrics())
    sm.on_event({"type": "model_metrics", "consumer": "yield", "model": "yield", "version": 1,
                 "metrics": {"auc": 0.68, "f1": 0.92}})
    sm.on_event({"type": "model_metrics", "consumer": "bins", "model": "bins", "version": 4,
                 "metrics": {"accuracy": 0.7}})
    sm.on_event({"type": "deploy", "consumer": "yield", "model": "yield", "version": 2})
    sm.on_event({"type": "model_metrics", "consumer": "yield", "model": "yield", "version": 2, "metrics": None})
    assert sm.model_metric.label_sets() == [{"consumer": "bins", "model": "bins", "metric": "accuracy"}]
    sm.on_event({"type": "model_metrics", "consumer": "yield", "model": "yield", "version": 2,
                 "metrics": {"auc": 0.93, "f1": 0.96}})
    assert sm.model_metric.value(consumer="yield", model="yield", metric="auc") == 0.93


def test_webhook_outcomes_are_exposed_from_the_start_when_a_webhook_is_set():
    """So that an alert on the first failed post (``increase()`` of a series born at 1 is 0) fires."""
    with_hook, without = serve_metrics(Metrics()), serve_metrics(Metrics())
    with_hook.start("yield", webhook=True)
    without.start("yield")
    assert sorted(labels["outcome"] for labels in with_hook.webhook_posts.label_sets()) == ["dropped", "failed", "sent"]
    assert without.webhook_posts.label_sets() == []


def test_trigger_kind_from_the_trigger_check_events_serve_emits():
    sm = serve_metrics(Metrics())
    log = EventLog(types.SimpleNamespace(send=lambda *args, **kwargs: None), "serve", "yield",
                   listeners=[sm.on_event])
    # the fields of serve's trigger_check events: its trigger policy's decisions, and manual retrains
    log.emit("trigger_check", fire=True, reason="drift", conditions=DRIFT_ONLY, position=5000)
    log.emit("trigger_check", fire=False, reason="cooldown: 200 records since the last retrain < 10000",
             conditions=DRIFT_ONLY, position=5200)
    log.emit("trigger_check", fire=True, reason="drift+performance", conditions=dict(DRIFT_ONLY, performance=True),
             position=9000)
    log.emit("trigger_check", fire=True, reason="manual: new probe card", conditions={"manual": True},
             position=9100)
    assert sm.triggers._children == {("yield", "drift", "true"): 1.0, ("yield", "drift", "false"): 1.0,
                                     ("yield", "drift+performance", "true"): 1.0,
                                     ("yield", "manual", "true"): 1.0}


def test_drift_statistic_keeps_only_recent_top_features():
    sm = serve_metrics(Metrics())
    for i in range(25):
        sm.on_event({"type": "drift", "consumer": "y", "detector": "ks", "features": [f"f{i}"],
                     "statistic": {f"f{i}": float(i)}})
    kept = {k[1] for k in sm.drift_statistic._children}
    assert kept == {f"f{i}" for i in range(15, 25)}


def test_lag_from_a_kafka_consumer_drops_revoked_partitions():
    class FakeConsumer:
        def __init__(self, parts):
            self.parts = parts

        def assignment(self):
            return {TopicPartition("parts", p) for p in self.parts}

        def highwater(self, tp):
            return {0: 100, 1: 50, 2: None, 3: 10}[tp.partition]

        def position(self, tp):  # kafka-python's may ask the broker: must not be called
            raise AssertionError("position() called")

    sm = serve_metrics(Metrics())
    read = {TopicPartition("parts", p): 40 for p in (0, 1, 2)}  # partition 3: nothing read yet
    sm.lag("yield", FakeConsumer([0, 1, 2, 3]), read)
    assert sm.consumer_lag.value(consumer="yield", topic="parts", partition=0) == 60
    assert sm.consumer_lag.value(consumer="yield", topic="parts", partition=1) == 10
    assert set(sm.consumer_lag._children) == {("yield", "parts", "0"), ("yield", "parts", "1")}
    sm.lag("yield", FakeConsumer([1]), read)
    assert set(sm.consumer_lag._children) == {("yield", "parts", "1")}


def test_lag_keeps_the_input_and_labels_topics_apart():
    parts, labels = TopicPartition("parts", 0), TopicPartition("parts.labels", 0)
    sm = serve_metrics(Metrics())
    highwater = {parts: 100_000, labels: 10}.get
    sm.lag("yield", types.SimpleNamespace(assignment=lambda: {parts, labels}, highwater=highwater),
           {parts: 40_000, labels: 10})
    assert sm.consumer_lag._children == {("yield", "parts", "0"): 60_000.0, ("yield", "parts.labels", "0"): 0.0}
    # the labels partition revoked: only its series goes
    sm.lag("yield", types.SimpleNamespace(assignment=lambda: {parts}, highwater=highwater), {parts: 40_000})
    assert sm.consumer_lag._children == {("yield", "parts", "0"): 60_000.0}


def test_worker_metrics_from_decisions():
    wm = worker_metrics(Metrics())
    wm.on_event({"type": "retrain_decision", "model": "yield", "decision": "rejected", "seconds": 12.5,
                 "gates": [{"name": "data_quality", "passed": True}, {"name": "beats_champion", "passed": False}]})
    wm.on_event({"type": "retrain_failed", "model": "yield", "attempt": 1, "final": False, "error": "boom"})
    assert wm.retrains.value(model="yield", decision="failed") == 0.0
    wm.on_event({"type": "retrain_failed", "error": "unreadable request"})
    assert wm.retrains.value(model="yield", decision="rejected") == 1.0
    assert wm.retrains.value(model="unknown", decision="failed") == 1.0
    assert wm.gate_verdicts.value(model="yield", gate="beats_champion", passed="false") == 1.0
    assert wm.retrain_seconds._children == {}  # the worker times each request, attempts together


def test_metrics_arguments_start_a_server_only_when_asked():
    import argparse

    from stream_ct.metrics import add_arguments, start_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert start_from_args(parser.parse_args([]), Metrics()) is None
    assert start_from_args(parser.parse_args([]), Metrics(), config_port=-1) is None
    from_config = start_from_args(parser.parse_args([]), Metrics(), config_port=0)
    assert from_config is not None
    from_config.close()
    server = start_from_args(parser.parse_args(["--metrics-port", "0"]), Metrics())
    try:
        assert server.port > 0 and _get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        server.close()


def test_worker_metrics_port_help_names_its_own_default(capsys):
    """The worker's help said its port defaulted to the consumer definition's [events]
    metrics_port, but it reads no definition at start: such a port never served its metrics."""
    from stream_ct.cli import main

    with pytest.raises(SystemExit):
        main(["retrain-worker", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "metrics_port of the consumer definition" not in help_text
    assert "default: off" in help_text
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "default: [events] metrics_port of the consumer definition" in " ".join(capsys.readouterr().out.split())


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers["Content-Type"]


def test_metrics_server_over_http():
    m = Metrics()
    sm = serve_metrics(m)
    sm.batch_done("yield", records=10, seconds=0.01)
    ready = {"value": True}
    server = MetricsServer(m, port=0, ready=lambda: ready["value"], stale_after_s=0.3)
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, body, ctype = _get(base + "/metrics")
        assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert 'stream_ct_records_total{consumer="yield"} 10.0\n' in body
        assert '# TYPE stream_ct_batch_seconds histogram' in body

        server.heartbeat()
        assert _get(base + "/healthz")[:2] == (200, "ok\n")
        time.sleep(0.5)
        status, body, _ = _get(base + "/healthz")
        assert status == 503 and body.startswith("stale: no heartbeat")
        server.heartbeat()
        assert _get(base + "/healthz")[0] == 200

        assert _get(base + "/readyz")[0] == 200
        ready["value"] = False
        assert _get(base + "/readyz")[:2] == (503, "not ready\n")
        server.ready = lambda: 1 / 0
        assert _get(base + "/readyz")[1].startswith("not ready: ZeroDivisionError")
        assert _get(base + "/nope")[0] == 404
    finally:
        server.close()


def test_counters_an_alert_watches_are_exposed_at_zero_before_their_first_event():
    """A series born at 1 is no increase to Prometheus: ``increase(stream_ct_rollbacks_total[1h]) > 0``
    (docs/operate.md) missed an instance's first rollback while the counter appeared only then."""
    from stream_ct.retrain_worker import RetrainWorker
    from stream_ct.serve import Server
    from stream_ct.config import ConsumerConfig

    config = ConsumerConfig.from_dict({"consumer": {"name": "yield", "input_topic": "parts"}})
    text = Server(config).metrics.render()
    for line in ('stream_ct_records_total{consumer="yield"} 0.0', 'stream_ct_dlq_total{consumer="yield"} 0.0',
                 'stream_ct_rollbacks_total{consumer="yield"} 0.0', 'stream_ct_deploys_total{consumer="yield"} 0.0',
                 'stream_ct_missing_results_total{consumer="yield"} 0.0',
                 'stream_ct_predictions_total{consumer="yield",source="champion"} 0.0'):
        assert line in text.splitlines(), line

    worker = RetrainWorker()
    worker.metrics.request_received("yield")
    assert 'stream_ct_retrains_total{model="yield",decision="rejected"} 0.0' in worker.metrics.registry.render()
    worker.metrics.on_event({"type": "retrain_decision", "model": "yield", "decision": "rejected", "gates": []})
    assert worker.metrics.retrains.value(model="yield", decision="rejected") == 1.0
