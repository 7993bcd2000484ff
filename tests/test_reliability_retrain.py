"""Issue 7, scenarios 4 and 5: retrain faults and a tampered artifact never disturb the champion.

One serve instance and a retrain worker; champion v1 from the reference window; then, with
direct requests on ``ct.retrain`` (seed 21, 12,000 records, about 90 s):

* the worker and its training child killed with SIGKILL mid-training: the request is
  redelivered to a new worker and settled exactly once with a decision;
* a candidate that fails the gates (``min_improvement`` unreachable): rejected;
* features that match nothing: skipped by ``quality:schema``;
* a window over a topic that does not exist: settled once (decision or final failure);
* ``retrain.timeout_s`` tiny: ``retrain_failed`` per attempt, ``final: true`` on the last;
* a promoted artifact tampered on disk and then announced on ``ct.models``: serve alerts
  ``checksum_mismatch`` and keeps serving v1; a serve instance started afterwards finds the
  tampered version announced, alerts ``champion_fallback`` and serves v1.

Throughout, every prediction comes from v1, none is lost, and the registry lists only complete
versions, each of which verifies (except the one tampered on purpose).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest

from harness import (EnvService, descendants, events_for, flip_byte, part_messages, prediction_values,
                     register_copy, report_line, simulated_records, wait_for_event, wait_until, write_config)
from stream_ct.config import ConsumerConfig
from stream_ct.kafka_io import topic_size
from stream_ct.kafka_io import MODELS_TOPIC, RETRAIN_TOPIC, ensure_topics, make_producer
from stream_ct.registry import IntegrityError, Registry
from stream_ct.replay import replay
from stream_ct.retrain_worker import announcement, retrain_request

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def request_with(config: ConsumerConfig, reason: str, start_ts_ms: int, end: int, **sections) -> dict:
    request = retrain_request(config, reason, start_ts_ms, {0: end})
    for section, values in sections.items():
        request["config"].setdefault(section, {}).update(values)
    return request


def events_of(topic: str, bootstrap: str, request_id: str, type_: str | None = None) -> list[dict]:
    return [e for e in events_for(topic, bootstrap)
            if e.get("request_id") == request_id and (type_ is None or e["type"] == type_)]


def test_retrain_faults_and_tampering_never_disturb_the_champion(tmp_path, kafka_bootstrap, topic):
    started = time.monotonic()
    records = simulated_records(12_000, seed=21)
    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    config_path = write_config(tmp_path, topic, reference_size=5000, window_records=4000)
    config = ConsumerConfig.load(config_path)
    registry = Registry(tmp_path / "registry")
    producer = make_producer(kafka_bootstrap)
    worker = EnvService(["retrain-worker"], tmp_path / "worker.log", tmp_path)
    serve = EnvService(["serve", str(config_path)], tmp_path / "serve.log", tmp_path)
    late = None
    settled: dict[str, dict] = {}

    def send(request: dict) -> None:
        producer.send(RETRAIN_TOPIC, key=topic.encode(), value=orjson.dumps(request))
        producer.flush()

    def settle(request: dict, services) -> dict:
        rid = request["request_id"]
        return wait_until(lambda: next((e for e in events_of(topic, kafka_bootstrap, rid)
                                        if e["type"] == "retrain_decision"
                                        or (e["type"] == "retrain_failed" and e.get("final"))), None),
                          180, f"request {request['reason']} to be settled", services, interval=0.5)

    try:
        replay(part_messages(records[:5500]), topic, kafka_bootstrap)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy" and e["version"] == 1, 180,
                       [worker, serve])
        replay(part_messages(records[5500:9000]), topic, kafka_bootstrap)
        start_ts = int(records[5000]["ts"] * 1000)

        # 1. kill -9 the worker and its training child mid-training; a new worker takes over.
        killed = request_with(config, "fault: worker killed", start_ts, 9000, gates={"min_improvement": 0.5})
        send(killed)
        grandchildren = wait_until(lambda: len(descendants(worker.proc.pid)) >= 2 and descendants(worker.proc.pid),
                                   120, "the training child to start", [worker, serve], interval=0.05)
        time.sleep(0.3)
        for pid in [*reversed(descendants(worker.proc.pid)), worker.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.proc.wait(10)
        time.sleep(1.0)
        leftover = [pid for pid in grandchildren if alive(pid)]
        assert not leftover, f"training processes outlived the kill: {leftover}"
        assert not events_of(topic, kafka_bootstrap, killed["request_id"], "retrain_decision")
        worker = EnvService(["retrain-worker"], tmp_path / "worker2.log", tmp_path)
        settled["killed"] = settle(killed, [worker, serve])

        # 2. a candidate that fails the gates
        rejected = request_with(config, "fault: gates", start_ts, 9000, gates={"min_improvement": 0.5})
        send(rejected)
        settled["rejected"] = settle(rejected, [worker, serve])
        # 3. features that match nothing: a schema skip
        schema = request_with(config, "fault: schema", start_ts, 9000, features={"include": ["NO_SUCH_TEST*"]})
        send(schema)
        settled["schema"] = settle(schema, [worker, serve])
        # 4. a window over a topic that does not exist
        nowhere = request_with(config, "fault: missing topic", start_ts, 9000)
        nowhere["window"]["topic"] = f"{topic}-does-not-exist"
        send(nowhere)
        settled["nowhere"] = settle(nowhere, [worker, serve])
        # 5. a timeout on every attempt
        slow = request_with(config, "fault: timeout", start_ts, 9000, retrain={"timeout_s": 0.05, "max_attempts": 2})
        send(slow)
        settled["timeout"] = settle(slow, [worker, serve])

        # 6. tampering: a promoted copy of v1 registered as a new version, announced after its
        #    model.skops was modified on disk.
        tampered_version = register_copy(registry, topic, 1, "promoted")
        message = announcement(registry, topic, tampered_version, "tamper test")
        flip_byte(registry.path(topic, tampered_version) / "model.skops")
        producer.send(MODELS_TOPIC, key=topic.encode(), value=message)
        producer.flush()
        alert = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "alert"
                               and e.get("kind") == "checksum_mismatch" and e.get("version") == tampered_version,
                               60, [serve])

        replay(part_messages(records[9000:]), topic, kafka_bootstrap)
        wait_until(lambda: topic_size(config.predictions_topic, kafka_bootstrap) >= len(records), 120,
                   "every record to be predicted", [serve])
        serve.stop()
        assert serve.proc.returncode == 0, serve.output()
        # 7. an instance that starts now (the stream consumed) finds the tampered version
        #    announced: it falls back to the newest earlier promoted version that verifies
        late = EnvService(["serve", str(config_path)], tmp_path / "serve-late.log", tmp_path)
        fallback = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy"
                                  and str(e.get("reason")).startswith("fallback"), 120, [late])
        late.stop()
    finally:
        serve.stop()
        worker.stop()
        if late is not None:
            late.stop()
        producer.close()

    events = events_for(topic, kafka_bootstrap)
    # each request settled exactly once
    for name, request in (("killed", killed), ("rejected", rejected), ("schema", schema), ("nowhere", nowhere),
                          ("timeout", slow)):
        rid = request["request_id"]
        decisions = [e for e in events if e.get("request_id") == rid and e["type"] == "retrain_decision"]
        finals = [e for e in events if e.get("request_id") == rid and e["type"] == "retrain_failed" and e.get("final")]
        assert len(decisions) + len(finals) == 1, (name, decisions, finals)
    starts = [e for e in events if e.get("request_id") == killed["request_id"] and e["type"] == "retrain_started"]
    assert len(starts) == 2, starts  # the killed worker's attempt, then the new worker's
    assert settled["killed"]["type"] == "retrain_decision" and settled["killed"]["decision"] == "rejected"
    assert settled["rejected"]["decision"] == "rejected"
    assert {g["name"] for g in settled["rejected"]["gates"] if not g["passed"]} == {"improvement"} or \
        any(not g["passed"] for g in settled["rejected"]["gates"])
    assert settled["schema"]["decision"] == "skipped"
    assert "quality:schema" in {g["name"] for g in settled["schema"]["gates"] if not g["passed"]}
    failed = [e for e in events if e.get("request_id") == slow["request_id"] and e["type"] == "retrain_failed"]
    assert [(e["attempt"], e["final"]) for e in failed] == [(1, False), (2, True)]
    assert all("TimeoutError" in e["error"] for e in failed)
    assert alert["severity"] == "critical"

    # the champion kept serving: every prediction after the first deploy is v1's
    deploys = [e for e in events if e["type"] == "deploy"]
    assert [d["version"] for d in deploys] == [1, 1]  # the second: the late instance's fallback
    assert fallback["version"] == 1 and fallback["reason"] == f"fallback: v{tampered_version} failed to load"
    [fell_back] = [e for e in events if e["type"] == "alert" and e.get("kind") == "champion_fallback"]
    assert fell_back["severity"] == "critical" and fell_back["failed_version"] == tampered_version
    predictions = prediction_values(config.predictions_topic, kafka_bootstrap)
    assert len(predictions) == len(records)
    assert {p["key"] for p in predictions} == {p["key"] for p in predictions} and \
        len({p["key"] for p in predictions}) == len(records)
    champion_versions = {p["version"] for p in predictions if p["source"] == "champion"}
    assert champion_versions == {1}
    assert all(p["source"] == "champion" for p in predictions[5500:])
    assert registry.champion(topic) == 1

    # no half-written artifact is visible: every listed version is complete and verifies
    listed = registry.versions(topic)
    for version in listed:
        if version == tampered_version:
            with pytest.raises(IntegrityError):
                registry.verify(topic, version)
        else:
            meta = registry.verify(topic, version)
            assert meta["decision"] in ("promoted", "rejected")
    model_dir = tmp_path / "registry" / topic
    partial = [p.name for p in model_dir.iterdir() if p.name.startswith(".tmp-")]
    report_line("retrain faults + tampering",
                faults="worker+child SIGKILL mid-training, gate failure, schema skip, missing topic, "
                       "timeout x2 attempts, tampered model.skops announced, a late instance falls back",
                records_in=len(records), records_lost=len(records) - len({p["key"] for p in predictions}),
                duplicates=len(predictions) - len({p["key"] for p in predictions}),
                versions=listed, tampered_version=tampered_version, leftover_tmp_folders=partial,
                nowhere=settled["nowhere"].get("decision") or settled["nowhere"].get("error"),
                seconds=round(time.monotonic() - started, 1))
