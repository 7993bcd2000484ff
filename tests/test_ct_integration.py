"""Triggers, shadow and rollback on the real broker: serve + retrain-worker processes.

Drift detection is switched off in these definitions (``[drift] enabled = false``): each test
is about one other trigger or deploy mechanism, and drift has its own tests.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

from harness import Service, events_for, wait_for_event, write_config
from stream_ct.recording import Message
from stream_ct.registry import Registry
from stream_ct.replay import replay
from stream_ct.retrain_worker import retrain_request, train_and_judge
from stream_ct.config import ConsumerConfig
from stream_ct.kafka_io import ensure_topics
from stream_ct.record import part_key
from stream_ct.simulate import Simulator

pytestmark = pytest.mark.integration
QUIET = dict(drift_enabled="false", reference_size=3000, window_records=3000, cooldown=2000)


def messages(records):
    return [Message(part_key(r).encode(), orjson.dumps(r), int(r["ts"] * 1000), [], None) for r in records]


def simulated(scenario, n, seed, **params):
    return list(Simulator(scenario=scenario, seed=seed, **params).generate(n).records())


def start(tmp_path, config, idle_s=5):
    worker = Service(["retrain-worker"], tmp_path / "worker.log", tmp_path)
    serve = Service(["serve", str(config), "--exit-when-idle", str(idle_s)], tmp_path / "serve.log", tmp_path)
    return worker, serve


def first_champion(topic, bootstrap, records, services):
    replay(messages(records), topic, bootstrap)
    return wait_for_event(topic, bootstrap, lambda e: e["type"] == "deploy", 120, services)


def finish(serve, worker, stop=False):
    """Wait for serve to exit when idle (every record served), or with ``stop`` ask it to stop
    now (SIGTERM: a graceful exit, 0 too); then stop the worker."""
    try:
        if stop:
            serve.proc.send_signal(signal.SIGTERM)
        assert serve.wait(180) == 0, serve.output()
    finally:
        serve.stop()
        worker.stop()


def test_manual_trigger_retrains_now(tmp_path, kafka_bootstrap, topic):
    records = simulated("none", 8000, seed=21)
    config = write_config(tmp_path, topic, **QUIET)
    # up until the command is read: under load, starting the retrain CLI took longer than 5 s
    worker, serve = start(tmp_path, config, idle_s=120)
    try:
        first_champion(topic, kafka_bootstrap, records[:3500], [worker, serve])
        replay(messages(records[3500:]), topic, kafka_bootstrap)
        out = subprocess.run([sys.executable, "-m", "stream_ct", "retrain", str(config), "--reason", "new probe card"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        decision = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "retrain_decision"
                                  and e["reason"] == "manual: new probe card", 120, [worker, serve])
    finally:
        finish(serve, worker, stop=True)
    assert decision["decision"] in ("promoted", "rejected") and decision["gates"]


def test_manual_trigger_with_no_serve_instance_says_so(tmp_path, kafka_bootstrap, topic):
    """With no serve instance of the consumer (not started, or a name other than serve's), it said
    'asked the serve instances ... to retrain' and exited 0; serve reads ct.control from its end,
    so the command was lost."""
    config = write_config(tmp_path, topic, **QUIET)
    out = subprocess.run([sys.executable, "-m", "stream_ct", "retrain", str(config), "--reason", "new probe card"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error: no serve instance of {topic} is running (consumer group "), out.stderr


def test_schedule_trigger_fires_every_n_records(tmp_path, kafka_bootstrap, topic):
    records = simulated("none", 12_000, seed=22)
    extra = '\n[triggers]\npolicy = "schedule"\nschedule_records = 4000\n'
    config = write_config(tmp_path, topic, extra=extra, **QUIET)
    worker, serve = start(tmp_path, config)
    try:
        first_champion(topic, kafka_bootstrap, records[:3500], [worker, serve])
        replay(messages(records[3500:]), topic, kafka_bootstrap)
    finally:
        finish(serve, worker)
    requests = [e for e in events_for(topic, kafka_bootstrap) if e["type"] == "retrain_requested"]
    assert [r["reason"] for r in requests][:2] == ["bootstrap", "schedule"]
    since = requests[1]["position"] - requests[0]["position"]
    assert 4000 <= since <= 4000 + 1000  # the interval, to within one poll batch


def test_performance_trigger_fires_on_concept_change(tmp_path, kafka_bootstrap, topic):
    onset = 5000
    records = simulated("concept", 12_000, seed=23, onset=onset)
    extra = '\n[triggers]\npolicy = "performance"\nperformance_margin = 0.10\nperformance_min_labels = 500\n'
    config = write_config(tmp_path, topic, extra=extra, **QUIET)
    worker, serve = start(tmp_path, config)
    try:
        first_champion(topic, kafka_bootstrap, records[:3500], [worker, serve])
        replay(messages(records[3500:]), topic, kafka_bootstrap)
    finally:
        finish(serve, worker)
    events = events_for(topic, kafka_bootstrap)
    fired = [e for e in events if e["type"] == "retrain_requested" and e["reason"] == "performance"]
    assert fired, [e for e in events if e["type"] == "trigger_check"]
    assert fired[0]["position"] > onset  # not before the concept changed


def test_degraded_champion_is_rolled_back_automatically(tmp_path, kafka_bootstrap, topic):
    """A version trained on scrambled labels is forced in by hand; live AUC falls; serve rolls back."""
    records = simulated("none", 14_000, seed=24)
    extra = '\n[triggers]\npolicy = "schedule"\n\n[deploy]\nrollback_drop = 0.05\nrollback_min_labels = 1000\n'
    config_path = write_config(tmp_path, topic, extra=extra, **QUIET)
    config = ConsumerConfig.load(config_path)
    worker, serve = start(tmp_path, config_path, idle_s=300)  # idle while the test trains the bad version
    try:
        first_champion(topic, kafka_bootstrap, records[:3500], [worker, serve])
        replay(messages(records[3500:6000]), topic, kafka_bootstrap)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "post_deploy_metric", 120, [serve])
        bad = [dict(r, passed=bool(np.random.default_rng(i).random() < 0.9)) for i, r in enumerate(records[:4000])]
        request = retrain_request(config, "manual: crafted bad candidate", 0, {0: 0})
        outcome = train_and_judge(request, bad, Registry(config.registry.path))
        assert outcome.decision == "rejected"
        out = subprocess.run([sys.executable, "-m", "stream_ct", "models", "promote", str(config_path),
                              "--version", str(outcome.version)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy" and e["version"] == outcome.version,
                       60, [serve])
        replay(messages(records[6000:]), topic, kafka_bootstrap)
        rollback = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "rollback", 120, [serve])
        back = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy" and e["reason"] == "rollback",
                              60, [serve])
    finally:
        finish(serve, worker, stop=True)
    assert rollback["from_version"] == outcome.version and rollback["to_version"] == 1
    assert back["version"] == 1
    alerts = [e for e in events_for(topic, kafka_bootstrap) if e["type"] == "alert" and e["kind"] == "rollback"]
    assert len(alerts) == 1
    assert Registry(config.registry.path).champion(config.model.name) == 1


def test_shadow_candidate_runs_beside_the_champion_before_promotion(tmp_path, kafka_bootstrap, topic):
    records = simulated("none", 12_000, seed=25)
    extra = '\n[triggers]\npolicy = "schedule"\n\n[deploy]\nshadow_records = 1500\n'
    config_path = write_config(tmp_path, topic, extra=extra, min_improvement=-0.05, **QUIET)
    worker, serve = start(tmp_path, config_path, idle_s=30)  # idle while the manual retrain runs
    try:
        first_champion(topic, kafka_bootstrap, records[:3500], [worker, serve])
        subprocess.run([sys.executable, "-m", "stream_ct", "retrain", str(config_path), "--reason", "shadow"],
                       check=True, capture_output=True, timeout=60)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "retrain_decision"
                       and e["reason"] == "manual: shadow", 120, [worker, serve])
        replay(messages(records[3500:]), topic, kafka_bootstrap)
        result = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "shadow_result", 120, [serve])
    finally:
        finish(serve, worker)
    events = events_for(topic, kafka_bootstrap)
    decision = next(e for e in events if e["type"] == "retrain_decision" and e["reason"] == "manual: shadow")
    assert decision["decision"] == "shadow"
    assert [e["version"] for e in events if e["type"] == "shadow_started"] == [decision["version"]]
    assert result["labeled"] >= 1500
    deployed = [e["version"] for e in events if e["type"] == "deploy"]
    assert (decision["version"] in deployed) == result["passed"]


def _parts_and_labels(n: int, seed: int, now_ms: int, labels_at_ms: int) -> tuple[list[Message], list[Message]]:
    """``n`` simulated parts without their label, 10 ms apart up to ``now_ms``, and a label
    record of each stamped ``labels_at_ms``."""
    records = simulated("none", n, seed=seed)
    parts = [Message(part_key(r).encode(), orjson.dumps(dict(r, passed=None)), now_ms - (n - i) * 10, [], None)
             for i, r in enumerate(records)]
    labels = [Message(part_key(r).encode(), orjson.dumps({k: r[k] for k in ("lot_id", "wafer_id", "part_id", "passed")}),
                      labels_at_ms, [], None) for r in records]
    return parts, labels


def _serve_across_a_restart(tmp_path, bootstrap: str, topic: str, first: list, while_down: list):
    """Serve (labels on ``<topic>.labels``; no champion, so the online model serves and learns)
    reads what ``first`` sent and stops; ``while_down`` is sent; serve runs again. Both are
    ``(topic, messages)`` pairs. Returns each run's ``labels`` counts and the second run."""
    config = write_config(tmp_path, topic, extra=f'\n[labels]\ntopic = "{topic}.labels"\n',
                          drift_enabled="false", reference_size=50_000, window_records=3000, cooldown=2000)
    ensure_topics({topic: {"partitions": 1}, f"{topic}.labels": {"partitions": 1}}, bootstrap)
    for to, messages in first:
        replay(messages, to, bootstrap)
    for run in ("before", "after"):
        serve = Service(["serve", str(config), "--exit-when-idle", "3"], tmp_path / f"serve-{run}.log", tmp_path)
        assert serve.wait(120) == 0, serve.output()
        for to, messages in (while_down if run == "before" else []):
            replay(messages, to, bootstrap)
    before, after = [e["labels"] for e in events_for(topic, bootstrap) if e["type"] == "serve_stopped"]
    return before, after, serve


def test_labels_that_come_while_serve_is_down_join_the_predictions_it_made_before(tmp_path, kafka_bootstrap, topic):
    """Serve stops with 1,000 of its 2,000 predictions waiting for their labels, which arrive
    while it is down. Its joiner lived in memory, so the restarted instance joined none of
    them; it now reads those parts back from before its committed offsets and joins every
    label. The 1,000 whose labels the first instance had read and joined do not wait again."""
    n, now_ms = 2000, int(time.time() * 1000)
    parts, labels = _parts_and_labels(n, 27, now_ms, labels_at_ms=now_ms)
    before, after, serve = _serve_across_a_restart(
        tmp_path, kafka_bootstrap, topic, first=[(topic, parts), (f"{topic}.labels", labels[:n // 2])],
        while_down=[(f"{topic}.labels", labels[n // 2:])])
    assert before["joined"] == n // 2
    assert after["restored_predictions"] == n // 2 and after["joined"] == n // 2, after
    assert "1,000 predictions and 0 labels made or read before a restart or rebalance wait again" in serve.output()


def test_labels_that_came_before_their_parts_wait_for_them_across_a_restart(tmp_path, kafka_bootstrap, topic):
    """Serve reads 2,000 labels but only the first 1,000 parts, and stops; the other 1,000
    parts come while it is down. Their labels waited as early labels in its memory, so the
    restarted instance joined none of them; it now reads them back from before the labels'
    committed offsets and joins each to its part when that comes."""
    n, now_ms = 2000, int(time.time() * 1000)
    parts, labels = _parts_and_labels(n, 28, now_ms, labels_at_ms=now_ms - n * 10)
    before, after, _ = _serve_across_a_restart(
        tmp_path, kafka_bootstrap, topic, first=[(f"{topic}.labels", labels), (topic, parts[:n // 2])],
        while_down=[(topic, parts[n // 2:])])
    assert before["joined"] == n // 2
    assert after["restored_labels"] == n // 2 and after["joined"] == n // 2, after
    assert after.get("restored_predictions", 0) == 0, after  # the first 1,000 were joined before the restart


def test_labels_read_before_any_part_of_their_partition_wait_across_a_restart(tmp_path, kafka_bootstrap, topic):
    """Serve reads 1,000 labels and no part, and stops; the parts come while it is down.
    Nothing of the input partition was committed, so the restart read nothing back and the
    labels joined none of their parts."""
    n, now_ms = 1000, int(time.time() * 1000)
    parts, labels = _parts_and_labels(n, 29, now_ms, labels_at_ms=now_ms - n * 10)
    before, after, _ = _serve_across_a_restart(tmp_path, kafka_bootstrap, topic,
                                               first=[(f"{topic}.labels", labels)], while_down=[(topic, parts)])
    assert before.get("joined", 0) == 0
    assert after["restored_labels"] == n and after["joined"] == n, after


def test_predictions_older_than_the_ttl_are_not_read_back_when_new_parts_come_first(tmp_path, kafka_bootstrap, topic):
    """Serve stops with 500 predictions waiting; parts the producer sent right after them wait
    in the topic while serve is down longer than ``ttl_seconds``. The restarted instance's first
    batch is those parts, and its commit of them was the note the read-back found: ages counted
    from a commit made now and timestamps seconds apart, the expired predictions (and the
    instance's own first batch) waited again. The note read is the one committed before."""
    n, ttl_s, now_ms = 500, 8, int(time.time() * 1000)
    records = simulated("none", 2 * n, seed=28)
    parts = [Message(part_key(r).encode(), orjson.dumps(dict(r, passed=None)), now_ms + (i - n) * 10, [], None)
             for i, r in enumerate(records)]
    label_topic = f"{topic}.labels"
    config = write_config(tmp_path, topic, extra=f'\n[labels]\ntopic = "{label_topic}"\nttl_seconds = {ttl_s}\n',
                          drift_enabled="false", reference_size=50_000, window_records=3000, cooldown=2000)
    replay(parts[:n], topic, kafka_bootstrap)
    serve = Service(["serve", str(config), "--exit-when-idle", "3"], tmp_path / "serve-before.log", tmp_path)
    assert serve.wait(120) == 0, serve.output()
    replay(parts[n:], topic, kafka_bootstrap)  # sent right after the first ones, while serve was down
    time.sleep(ttl_s + 2)
    serve = Service(["serve", str(config), "--exit-when-idle", "3"], tmp_path / "serve-after.log", tmp_path)
    assert serve.wait(120) == 0, serve.output()
    after = [e["labels"] for e in events_for(topic, kafka_bootstrap) if e["type"] == "serve_stopped"][-1]
    assert after.get("restored_predictions", 0) == 0, (after, serve.output())


def test_labels_that_arrive_later_on_a_labels_topic(tmp_path, kafka_bootstrap, topic):
    """Parts carry no outcome; it arrives later on a labels topic, joined by part key in serve
    (rolling metric) and in the retrain worker (training labels)."""
    records = simulated("none", 9000, seed=26)
    labels = [{"lot_id": r["lot_id"], "wafer_id": r["wafer_id"], "part_id": r["part_id"], "passed": r["passed"]}
              for r in records]
    parts = [dict(r, passed=None) for r in records]
    label_topic = f"{topic}.labels"
    extra = f'\n[labels]\ntopic = "{label_topic}"\nbuffer_size = 20000\n\n[triggers]\npolicy = "schedule"\n'
    config = write_config(tmp_path, topic, extra=extra, **QUIET)
    label_messages = [Message(part_key(x).encode(), orjson.dumps(x), int(r["ts"] * 1000) + 60_000, [], None)
                      for x, r in zip(labels, records)]
    worker, serve = start(tmp_path, config, idle_s=8)
    try:
        replay(messages(parts[:3500]), topic, kafka_bootstrap)
        replay(label_messages[:3500], label_topic, kafka_bootstrap)
        bootstrap = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "retrain_decision", 120,
                                   [worker, serve])
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy", 60, [serve])
        replay(messages(parts[3500:]), topic, kafka_bootstrap)
        replay(label_messages[3500:], label_topic, kafka_bootstrap)
        post = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "post_deploy_metric", 120, [serve])
    finally:
        finish(serve, worker)
    assert bootstrap["decision"] == "promoted" and bootstrap["rows"] >= 3000  # labels joined for training
    assert post["labeled"] >= 2000 and post["metric"]["auc"] > 0.7           # and joined while serving
    stopped = next(e for e in events_for(topic, kafka_bootstrap) if e["type"] == "serve_stopped")
    assert stopped["labels"]["joined"] >= len(records) - 3500
