"""The whole loop on the real broker: serve + retrain-worker processes, asserted on ground truth."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from harness import Service, events_for, prediction_values, wait_for_event, write_config
from stream_ct.binary_record import ENCODERS
from stream_ct.config import ConsumerConfig
from stream_ct.kafka_io import RETRAIN_TOPIC, make_producer
from stream_ct.record import part_key
from stream_ct.recording import Message
from stream_ct.replay import record, replay
from stream_ct.retrain_worker import retrain_request
from stream_ct.simulate import Simulator

pytestmark = pytest.mark.integration

#: A 1.5-sigma mean shift in one of 50 tests must be signalled within this many records.
DETECTION_BOUND = 3000
#: The drift reference must span many lots (docs/drift.md): small lots of 5 wafers x 50 dies
#: put 40 lots in a 10,000-record reference.
FAB = dict(parts_per_wafer=50, wafers_per_lot=5)
REFERENCE = 10_000


def messages(records, encoding: str = "json") -> list[Message]:
    encode = ENCODERS[encoding]
    return [Message(part_key(r).encode(), encode(r), int(r["ts"] * 1000), [("source", b"test")], None)
            for r in records]


def simulated(scenario: str, n: int, seed: int, **params) -> tuple[list[dict], dict]:
    sim = Simulator(scenario=scenario, seed=seed, **FAB, **params)
    return list(sim.generate(n).records()), sim.ground_truth


def start_loop(tmp_path, config):
    worker = Service(["retrain-worker"], tmp_path / "worker.log", tmp_path)
    serve = Service(["serve", str(config), "--exit-when-idle", "6"], tmp_path / "serve.log", tmp_path)
    return worker, serve


def run_stream(tmp_path, kafka_bootstrap, topic, records, reference_size=REFERENCE, **config_overrides):
    """Replay the reference part, wait for the first champion, replay the rest; wait for serve to end."""
    config = write_config(tmp_path, topic, reference_size=reference_size, **config_overrides)
    worker, serve = start_loop(tmp_path, config)
    try:
        replay(messages(records[: reference_size + 500]), topic, kafka_bootstrap)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy", 120, [worker, serve])
        replay(messages(records[reference_size + 500:]), topic, kafka_bootstrap)
        assert serve.wait(300) == 0, serve.output()
    finally:
        serve.stop()
        worker.stop()
    return ConsumerConfig.load(config), events_for(topic, kafka_bootstrap)


def count(topic: str, bootstrap: str) -> int:
    return sum(1 for _ in record(topic, bootstrap))


def test_no_drift_means_no_retrain(tmp_path, kafka_bootstrap, topic):
    records, _ = simulated("none", 40_000, seed=11)
    config, events = run_stream(tmp_path, kafka_bootstrap, topic, records)
    requests = [e for e in events if e["type"] == "retrain_requested"]
    assert [r["reason"] for r in requests] == ["bootstrap"]
    assert not [e for e in events if e["type"] == "drift"]
    predictions = count(config.predictions_topic, kafka_bootstrap)
    assert predictions == len(records)
    # 40 small lots: the deploy says which global charts the short reference turned off
    [deploy] = [e for e in events if e["type"] == "deploy"]
    assert [w for w in deploy["drift_warnings"] if "global mean-shift charts" in w], deploy
    # one tester's stream on one partition: whole wafers, so no warning that they come in pieces
    assert not [e for e in events if e["type"] == "alert" and e.get("kind") == "drift_monitor"]


def test_mean_shift_fires_after_onset_and_promotes_a_new_champion(tmp_path, kafka_bootstrap, topic):
    onset = 18_000
    records, truth = simulated("process-change", 36_000, seed=5, onset=onset, shift_sigma=1.5)
    config, events = run_stream(tmp_path, kafka_bootstrap, topic, records)
    drift = [e for e in events if e["type"] == "drift"]
    assert drift, "the shift was not detected"
    first = min(e["offset"] for e in drift)
    assert onset <= first <= onset + DETECTION_BOUND, (first, onset)
    shifted = truth["onsets"][0]["tests"][0]
    assert any(shifted in e["features"] for e in drift)
    charted = [e for e in drift if e.get("positions")]  # CUSUM: each test's own crossing, in stream positions
    assert charted and all(min(e["positions"].values()) == e["position"] and set(e["positions"]) == set(e["features"])
                           for e in charted)
    decisions = [e for e in events if e["type"] == "retrain_decision"]
    assert decisions[0]["reason"] == "bootstrap" and "drift" in decisions[1]["reason"]
    assert len(decisions) == 2  # one drift episode, one retrain (cooldown)
    assert decisions[1]["decision"] == "promoted", decisions[1]["gates"]
    steps = decisions[1]["step_seconds"]  # where the retrain's time went, each step timed
    assert {"read", "fit", "holdout", "gates", "drift_calibration", "registry"} <= set(steps)
    assert 0 < sum(steps.values()) <= decisions[1]["seconds"]
    deploys = [e["version"] for e in events if e["type"] == "deploy"]
    assert deploys == [1, 2]
    assert count(config.predictions_topic, kafka_bootstrap) == len(records)


def test_candidate_on_corrupted_labels_is_rejected_and_champion_keeps_serving(tmp_path, kafka_bootstrap, topic):
    records, _ = simulated("none", 12_000, seed=3)
    rng = np.random.default_rng(0)
    for r in records[6000:]:
        r["passed"] = bool(rng.random() < 0.9)  # labels with no relation to the tests
    config_path = write_config(tmp_path, topic, drift_enabled="false")  # this test is about gates
    config = ConsumerConfig.load(config_path)
    worker, serve = start_loop(tmp_path, config_path)
    try:
        replay(messages(records[:5500]), topic, kafka_bootstrap)
        wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "deploy", 120, [worker, serve])
        replay(messages(records[5500:]), topic, kafka_bootstrap)
        producer = make_producer(kafka_bootstrap)
        start_ts = int(records[6000]["ts"] * 1000)
        request = retrain_request(config, "manual", start_ts, {0: len(records)})
        producer.send(RETRAIN_TOPIC, key=topic.encode(), value=orjson.dumps(request))
        producer.flush()
        decision = wait_for_event(topic, kafka_bootstrap, lambda e: e["type"] == "retrain_decision"
                                  and e["request_id"] == request["request_id"], 120, [worker])
        assert serve.wait(120) == 0
    finally:
        serve.stop()
        worker.stop()
    assert decision["decision"] == "rejected"
    failed = {g["name"] for g in decision["gates"] if not g["passed"]}
    assert "absolute_metric" in failed
    versions = {p["version"] for p in prediction_values(config.predictions_topic, kafka_bootstrap)
                if p["source"] == "champion"}
    assert versions == {1}


@pytest.mark.parametrize("encoding, prediction_messages", [("json", "part"), ("binary", "batch")])
def test_bad_records_go_to_the_dlq_and_nothing_is_lost(tmp_path, kafka_bootstrap, topic, encoding, prediction_messages):
    records, _ = simulated("none", 7000, seed=9)
    good = messages(records, encoding)
    bad = [Message(b"k1", b"{not json", 1, [], None), Message(b"k2", b'{"lot_id": 1}', 2, [], None),
           Message(b"k3", b"\xff\xfe", 3, [("h", b"\x00")], None), Message(b"k4", b"[1, 2]", 4, [], None),
           Message(b"k5", ENCODERS["binary"](records[0])[:-3], 5, [], None)]  # a truncated binary record
    mixed = good[:6000] + bad + good[6000:]
    config_path = write_config(tmp_path, topic, drift_enabled="false",  # this test is about decoding
                               prediction_messages=prediction_messages)
    config = ConsumerConfig.load(config_path)
    worker, serve = start_loop(tmp_path, config_path)
    try:
        replay(mixed, topic, kafka_bootstrap)
        assert serve.wait(180) == 0, serve.output()
    finally:
        serve.stop()
        worker.stop()
    dead = list(record(config.dlq_topic, kafka_bootstrap))
    assert sorted(m.value for m in dead) == sorted(m.value for m in bad)
    for m in dead:
        headers = dict(m.headers)
        assert headers["dlq.reason"] and headers["dlq.topic"] == topic.encode()
    predictions = sorted(prediction_values(config.predictions_topic, kafka_bootstrap), key=lambda p: p["offset"])
    assert len(predictions) + len(dead) == len(mixed)
    # one input partition: every good record predicted once, under its part key
    assert [(p["offset"], p["key"]) for p in predictions] == [
        (offset, m.key.decode()) for offset, m in enumerate(mixed) if m not in bad]
    sent = count(config.predictions_topic, kafka_bootstrap)
    if prediction_messages == "part":
        assert sent == len(good)
    else:  # one message per poll of at most 1,000 records
        assert sent <= len(mixed) // 100, sent
