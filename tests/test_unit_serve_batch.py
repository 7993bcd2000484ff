"""Serve's per-batch model path without a broker: what each use case scores and measures."""

from __future__ import annotations

import types

import numpy as np
import orjson
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaTimeoutError

from stream_ct import serve
from stream_ct.anomaly import AnomalyModel
from stream_ct.awaiting import Waiting, commit_note, read_note, record_age_s
from stream_ct.config import ConsumerConfig
from stream_ct.drift import DriftMonitor
from stream_ct.rolling import RollingMetric
from stream_ct.serve import HISTOGRAM_FEATURES, Server

TESTS = ("a", "b", "c")


def _server(tmp_path, model: dict) -> Server:
    server = Server(ConsumerConfig.from_dict({"consumer": {"name": "uc", "input_topic": "parts"}, "model": model,
                                              "registry": {"path": str(tmp_path)}}))
    server.sent = []
    server.outbox = types.SimpleNamespace(send=lambda topic, **kw: server.sent.append((topic, kw)))
    server.producer = types.SimpleNamespace(partitions_for=lambda topic: {0})
    return server


def _messages(records: list[dict]) -> list:
    return [types.SimpleNamespace(value=orjson.dumps(r), key=None, topic="parts", partition=0, offset=i,
                                  timestamp=int(r["ts"] * 1000), headers=[]) for i, r in enumerate(records)]


def _records(X: np.ndarray, **fields) -> list[dict]:
    return [{"lot_id": "L", "wafer_id": "W", "part_id": str(i), "ts": 1.0 + i, "passed": bool(i % 3),
             "tests": dict(zip(TESTS, row.tolist())), **{k: v[i] for k, v in fields.items()}}
            for i, row in enumerate(X)]


def test_an_outlier_consumer_has_no_labels_so_no_metric_against_the_pass_fail_field(tmp_path):
    """Outlier models learn without labels; ``passed`` on the records is not their target (the
    default ``[model] target``), so no r2/mae/mape of anomaly scores against it."""
    server = _server(tmp_path, {"task": "anomaly", "estimator": "half_space_trees"})
    X = np.random.default_rng(0).normal(size=(300, 3))
    server.champion = types.SimpleNamespace(version=1, estimator=AnomalyModel().fit(X),
                                            meta={"feature_names": list(TESTS)})
    server.champion_metric = RollingMetric("anomaly")
    server._process_parts(_messages(_records(X)))
    assert server.position == 300 and server.counts["predictions_champion"] == 300
    assert server.champion_metric.value() is None and server.online_metric.value() is None


def test_an_outlier_consumer_does_not_flag_a_part_with_no_measurement(tmp_path):
    """Every result missing, null or a sentinel: the part scored near 1 and was flagged as an
    outlier, by the champion and by the online model before it; now score and prediction are null."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    empty = [{"lot_id": "L", "wafer_id": "W", "part_id": f"e{i}", "ts": 400.0 + i, "tests": tests}
             for i, tests in enumerate([{"a": None, "b": None, "c": None}, {"a": None, "b": 9.9e37, "c": -9.9e37}])]
    for champion in (None, AnomalyModel().fit(X)):
        server = _server(tmp_path, {"task": "anomaly", "estimator": "half_space_trees"})
        if champion is not None:
            server.champion = types.SimpleNamespace(version=1, estimator=champion, meta={"feature_names": list(TESTS)})
            server.champion_metric = RollingMetric("anomaly")
        server._process_parts(_messages(_records(X) + empty))
        out = [orjson.loads(kw["value"]) for _, kw in server.sent]
        assert server.counts["dlq"] == 0 and len(out) == 302
        assert [(o["score"], o["prediction"]) for o in out[300:]] == [(None, None)] * 2
        assert all(type(o["prediction"]) is bool for o in out[:300])
        assert server.online.n_learned == 300  # an empty row is not learned either


def test_a_test_time_consumer_dead_letters_a_test_time_that_is_not_a_number(tmp_path):
    """It crashed the loop (``float("n/a")``), again at every restart on the same record."""
    server = _server(tmp_path, {"task": "regression", "target": "test_time_ms"})
    X = np.random.default_rng(0).normal(size=(3, 3))
    server._process_parts(_messages(_records(X, test_time_ms=[812, "n/a", 790])))
    assert server.position == 2 and server.counts["dlq"] == 1 and server.online.n_learned == 2


def test_labels_that_arrive_later_score_the_online_model_too(tmp_path):
    """Its prequential metric (``online`` on ``model_metrics``, serve's summary) stayed empty
    when labels came on a labels topic, before and after a champion."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.config = ConsumerConfig.from_dict({**server.config.to_dict(), "labels": {"topic": "parts.labels"}})
    X = np.random.default_rng(0).normal(size=(400, 3))
    records = _records(X)
    passed = [(r["part_id"], r.pop("passed")) for r in records]

    def label(batch):
        server._process_labels([types.SimpleNamespace(
            value=orjson.dumps({"lot_id": "L", "wafer_id": "W", "part_id": p, "passed": y}), key=None,
            topic="parts.labels", partition=0, offset=0, timestamp=0, headers=[]) for p, y in batch])

    server._process_parts(_messages(records[:200]))
    assert server.counts["predictions_online"] == 200 and server.online_metric.seen == 0
    label(passed[:200])
    assert server.online.n_learned == 200 and server.online_metric.seen == 200
    assert server.online_metric.value() is not None
    constant = types.SimpleNamespace(predict_proba=lambda X: np.full((len(X), 2), 0.5))
    server.champion = types.SimpleNamespace(version=1, meta={"feature_names": list(TESTS)}, estimator=constant)
    server.champion_metric = RollingMetric("classification")
    server._process_parts(_messages(records[200:]))
    label(passed[200:])
    assert server.champion_metric.seen == 200 and server.champion_metric.value()["auc"] == 0.5
    assert server.online_metric.seen == 400 and server.online_metric.value()["auc"] != 0.5


def test_a_dead_letter_keeps_headers_whose_value_is_null(tmp_path):
    """Kafka allows a header without a value (kafka-python reads it as None) but kafka-python's
    send refuses one: copying it onto the dead letter raised TypeError and ended serve, again at
    every restart on the same record."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})

    def send(topic, **kw):  # what kafka-python's KafkaProducer.send checks first
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in kw.get("headers") or []):
            raise TypeError("All headers items must be (str, bytes) tuples")
        server.sent.append((topic, kw))

    server.outbox = types.SimpleNamespace(send=send)
    [message] = _messages([{"lot_id": "L", "ts": 1.0}])  # no tests, no part id: not a part record
    message.headers = [("trace", None), ("source", b"tester-7")]
    server._process_parts([message])
    [(topic, dead)] = server.sent
    headers = dict(dead["headers"])
    assert topic == "parts.dlq" and server.counts["dlq"] == 1 and dead["value"] == message.value
    assert headers["trace"] == b"" and headers["source"] == b"tester-7"
    assert orjson.loads(headers["dlq.null_headers"]) == ["trace"] and headers["dlq.offset"] == b"0"


def test_a_drift_event_carries_the_histograms_of_its_strongest_features(tmp_path):
    """The report draws reference against current distributions from drift events, but serve's
    carried none. They are made per event: a batch without a signal makes none."""
    names = ["t1", "t2", "t3", "t4", "t5"]
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.emitted = []
    server.events = types.SimpleNamespace(emit=lambda type_, **kw: server.emitted.append((type_, kw)))
    constant = types.SimpleNamespace(predict_proba=lambda X: np.full((len(X), 2), 0.5))
    server.champion = types.SimpleNamespace(version=1, estimator=constant, meta={"feature_names": names})
    server.champion_metric = RollingMetric("classification")
    rng = np.random.default_rng(0)
    server.monitor = DriftMonitor(rng.normal(size=(4000, 5)), names, arl0=10_000, window=400, stride=200,
                                  block=5, n_boot=30_000, seed=1)
    made = []
    histograms = server.monitor.histograms
    server.monitor.histograms = lambda features, stratum: made.append(list(features)) or histograms(features, stratum)

    def batch(X):
        records = _records(X[:, :3])
        for record, row in zip(records, X):
            record["tests"] = dict(zip(names, row.tolist()))
        server._process_parts(_messages(records))

    batch(rng.normal(size=(1000, 5)))
    assert server.counts["drift_signals"] == 0 and made == []
    batch(rng.normal(size=(1000, 5)) * np.array([3.0, 2.8, 2.6, 2.4, 1.0]))  # four tests spread out
    drift = [kw for kind, kw in server.emitted if kind == "drift"]
    assert drift and len(made) == len(drift) == server.counts["drift_signals"]
    assert max(len(event["features"]) for event in drift) > HISTOGRAM_FEATURES == 3
    for event in drift:
        hists = event["histograms"]
        assert [h["feature"] for h in hists] == event["features"][:HISTOGRAM_FEATURES]
        for h in hists:
            assert h["edges"][0] is None and h["edges"][-1] is None
            assert len(h["edges"]) == len(h["reference"]) + 1 == len(h["current"]) + 1
            assert sum(h["current"]) == server.monitor.window
    assert orjson.loads(orjson.dumps(drift)) == drift


def _site_server(tmp_path, reference_sites: list[str]) -> Server:
    """A server whose drift monitor's reference holds sites 1 of heads 1 and 2 (named as given)."""
    names = ["t1", "t2", "t3"]
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.emitted = []
    server.events = types.SimpleNamespace(emit=lambda type_, **kw: server.emitted.append((type_, kw)))
    constant = types.SimpleNamespace(predict_proba=lambda X: np.full((len(X), 2), 0.5))
    monitor = DriftMonitor(np.random.default_rng(0).normal(size=(8000, 3)), names, arl0=10_000, window=400,
                           stride=200, block=5, n_boot=30_000, seed=1,
                           reference_groups=np.repeat(np.arange(40), 200).astype(str),
                           reference_strata={"site": np.resize(reference_sites, 8000)})
    server.watcher = types.SimpleNamespace(take=lambda: types.SimpleNamespace(
        artifact=types.SimpleNamespace(version=1, estimator=constant, meta={"feature_names": names}),
        monitor=monitor, announcement={"reason": "bootstrap"}, at_start=True, unjudged=None))
    server._swap_if_ready()
    return server


def _two_heads(X: np.ndarray, offset: float) -> list[dict]:
    """Parts alternating between site 1 of head 1 and site 1 of head 2; head 2's t1 moved by ``offset``."""
    records = _records(X)
    for i, record in enumerate(records):
        record.update(head=1 + i % 2, site=1, tests={"t1": float(X[i, 0] + offset * (i % 2)), "t2": float(X[i, 1]),
                                                     "t3": float(X[i, 2])})
    return records


def test_a_site_s_shift_is_reported_on_its_own_head(tmp_path):
    """STDF numbers sites per head: site 1 of head 2 is not site 1 of head 1. Its stratum was the
    site number alone, so a shift on head 2 was diluted by head 1's parts and reported as
    ``site=1``, pointing the engineer at both probe cards."""
    server = _site_server(tmp_path, ["1/1", "2/1"])
    rng = np.random.default_rng(1)
    server._process_parts(_messages(_two_heads(rng.normal(size=(2000, 3)), 0.0)))
    assert server.counts["drift_signals"] == 0
    for _ in range(4):
        server._process_parts(_messages(_two_heads(rng.normal(size=(2000, 3)), 1.0)))
    strata = [event["stratum"] for kind, event in server.emitted if kind == "drift" and event["stratum"]]
    assert strata and all(stratum == {"site": "2/1"} for stratum in strata)


def test_a_reference_that_names_sites_by_number_alone_keeps_serving_that_way(tmp_path):
    """A champion registered before sites were named with their heads has per-site reference
    means under "1", "2", ...: the stream's sites are named the same way until the next retrain,
    rather than as levels the reference never saw."""
    server = _site_server(tmp_path, ["1"])
    assert not server.site_heads
    seen = []
    update = server.monitor.update
    server.monitor.update = lambda X, strata, **kw: seen.append(strata["site"].tolist()) or update(X, strata, **kw)
    server._process_parts(_messages(_two_heads(np.zeros((4, 3)), 0.0)))
    assert seen == [["1", "1", "1", "1"]]


def test_a_champion_that_learned_the_tester_scores_each_record_with_its_tester_s_code(tmp_path):
    """Serve must encode a field as training did (``categories`` in the registry record): the
    tester's levels there, and a tester the champion never saw as none of them."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from stream_ct.categories import model_matrix

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    testers = rng.choice(["T1", "T2", "T3"], size=600)
    offset = {"T1": 0.0, "T2": 50.0, "T3": -50.0}
    y = 800 + 10 * X[:, 0] + np.array([offset[t] for t in testers])
    categories = {"tester": ["T1", "T2", "T3"]}
    records = _records(X, tester=testers.tolist(), test_time_ms=y.round().tolist())
    champion = HistGradientBoostingRegressor(random_state=0).fit(model_matrix(X, records, categories), y)
    server = _server(tmp_path, {"task": "regression", "target": "test_time_ms"})
    server.champion = types.SimpleNamespace(version=1, estimator=champion,
                                            meta={"feature_names": list(TESTS), "categories": categories})
    server.champion_metric = RollingMetric("regression")
    unseen = [dict(records[0], part_id="new", tester="T9")]
    server._process_parts(_messages(records + unseen))
    scores = [orjson.loads(kw["value"])["score"] for _, kw in server.sent]
    np.testing.assert_allclose(scores[:600], champion.predict(model_matrix(X, records, categories)))
    assert scores[600] == champion.predict(np.array([[*X[0], 0.0, 0.0, 0.0]]))[0]
    assert server.champion_metric.value()["r2"] > 0.9  # each tester's offset is learned


def test_a_target_the_record_schema_does_not_check_dead_letters_a_value_that_is_no_label(tmp_path):
    """A consumer's own target field (not ``passed``, a bin or ``test_time_ms``): a string or a
    list there crashed the batch (``float()``), again at every restart on the same record."""
    server = _server(tmp_path, {"task": "classification", "target": "final_pass"})
    X = np.random.default_rng(0).normal(size=(5, 3))
    server._process_parts(_messages(_records(X, final_pass=[1, "no", ["x"], "0", None])))
    reasons = [dict(kw["headers"])["dlq.reason"].decode() for topic, kw in server.sent if topic == "parts.dlq"]
    assert reasons == ["field final_pass = 'no' is not a finite number, so no label",
                       "field final_pass = ['x'] is not a finite number, so no label"]
    assert server.position == 3 and server.counts["dlq"] == 2 and server.online.n_learned == 2


def test_a_record_over_1_mb_is_dead_lettered_without_its_value(tmp_path):
    """Its dead letter raised MessageSizeTooLargeError at the same record at every restart: a
    DLQ topic at Kafka's default limit (1 MB) refused 1.5 MB, serve's producer (2 MiB) 2.5 MB.
    It now says where the original is; a bad record within the limit still carries its bytes."""
    server = _server(tmp_path, {"task": "classification"})
    big, fits = (types.SimpleNamespace(value=b"x" * n, key=b"k", topic="parts", partition=0, offset=i,
                                       timestamp=0, headers=[]) for i, n in enumerate((1_500_000, 999_999)))
    server._process_parts([big, fits])
    (_, first), (_, second) = server.sent
    headers = dict(first["headers"])
    assert first["value"] == b"" and headers["dlq.value_omitted"] == b"1500000"
    assert headers["dlq.reason"].startswith(b"oversized") and (headers["dlq.topic"], headers["dlq.offset"]) == (
        b"parts", b"0")
    assert second["value"] == b"x" * 999_999 and "dlq.value_omitted" not in dict(second["headers"])


def test_a_part_with_none_of_the_champion_s_tests_gets_no_prediction(tmp_path):
    """Parts of another test program on the topic were predicted "fail" at score 0.00002 by a
    yield champion: hist gradient boosting answers an all-missing row from its learned defaults."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    champion = HistGradientBoostingClassifier(random_state=0).fit(X, X[:, 0] > 0)
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.champion = types.SimpleNamespace(version=1, estimator=champion, meta={"feature_names": list(TESTS)})
    server.champion_metric = RollingMetric("classification")
    other_program = [{"lot_id": "M", "wafer_id": "W", "part_id": "1", "ts": 500.0, "passed": False,
                      "tests": {"900:OTHER": 1.0}}]
    server._process_parts(_messages(_records(X[:5]) + other_program))
    out = [orjson.loads(kw["value"]) for _, kw in server.sent]
    assert [(o["score"], o["prediction"]) for o in out[5:]] == [(None, None)]
    assert all(type(o["prediction"]) is bool and o["score"] is not None for o in out[:5])


def test_a_shadow_is_compared_with_the_champion_on_the_parts_both_scored(tmp_path):
    """A part with none of the champion's tests has no champion score: counted for the shadow
    alone, it compared the two on different parts."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    champion = HistGradientBoostingClassifier(random_state=0).fit(X, X[:, 0] > 0)
    shadow = HistGradientBoostingClassifier(random_state=0).fit(X[:, :1], X[:, 0] > 0)
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.champion = types.SimpleNamespace(version=1, estimator=champion, meta={"feature_names": list(TESTS)})
    server.shadow = types.SimpleNamespace(version=2, estimator=shadow, meta={"feature_names": ["d"]})
    server.champion_metric = RollingMetric("classification")
    server.shadow_metrics = (RollingMetric("classification"), RollingMetric("classification"))
    records = _records(X[:5])
    for record, x in zip(records, X[:5, 0].tolist()):
        record["tests"]["d"] = x  # the shadow's one test
    only_d = [{"lot_id": "M", "wafer_id": "W", "part_id": "1", "ts": 500.0, "passed": True, "tests": {"d": 0.3}}]
    server._process_parts(_messages(records + only_d))
    assert server.shadow_metrics[0].seen == server.shadow_metrics[1].seen == 5


def test_predictions_committed_before_a_restart_wait_for_their_labels_again(tmp_path, monkeypatch):
    """A restarted instance's joiner was empty: the labels of the parts predicted before the
    restart joined nothing. The parts read back from a newly assigned partition (in a thread
    of its own, serving goes on) are scored by the champion serving then; their labels, here
    come before the read-back ended, update its metric and teach the online model."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.config = ConsumerConfig.from_dict({**server.config.to_dict(), "labels": {"topic": "parts.labels"}})
    records = _records(np.random.default_rng(1).normal(size=(300, 3)))
    passed = [(r["part_id"], r.pop("passed")) for r in records]
    constant = types.SimpleNamespace(predict_proba=lambda X: np.full((len(X), 2), 0.5))
    server.champion = types.SimpleNamespace(version=3, meta={"feature_names": list(TESTS)}, estimator=constant)
    server.champion_metric = RollingMetric("classification")
    committed = OffsetAndMetadata(300, commit_note(last_timestamp_ms=1_000_000), -1)
    server.consumer = types.SimpleNamespace(committed=lambda tp, metadata, timeout_ms: committed, assignment=set)
    asked = []
    monkeypatch.setattr(serve, "waiting_records",
                        lambda *args: asked.append(args) or Waiting([(5.0, r) for r in records], []))
    server.unrestored = {TopicPartition("parts", 0)}
    labels = [types.SimpleNamespace(value=orjson.dumps({"lot_id": "L", "wafer_id": "W", "part_id": p, "passed": y}),
                                    key=None, topic="parts.labels", partition=0, offset=i, timestamp=0, headers=[])
              for i, (p, y) in enumerate(passed)]
    server._restore_waiting()
    server._process({TopicPartition("parts.labels", 0): labels})  # the labels come before the read-back ends
    for thread in server.read_backs:
        thread.join()
    server._restore_read_back()
    assert asked[0][:3] == ("parts", 0, 300) and server.unrestored == set()
    assert server.joiner.counts["restored_predictions"] == 300 and server.joiner.counts["joined"] == 300
    assert server.champion_metric.seen == 300 and server.online.n_learned == 300
    assert server.online_metric.seen == 0  # the online model's scores before the restart are gone


def test_predictions_that_cannot_be_read_back_are_said_and_serving_goes_on(tmp_path, capsys):
    server = _server(tmp_path, {"task": "classification", "target": "passed"})

    def committed(tp, metadata, timeout_ms):
        raise KafkaTimeoutError("Timeout waiting for future")

    server.consumer = types.SimpleNamespace(committed=committed)
    server.unrestored = {TopicPartition("parts", 2)}
    server._restore_waiting()
    server._process({TopicPartition("parts", 2): _messages(_records(np.zeros((5, 3))))})
    assert server.counts["predictions_online"] == 5 and server.unrestored == set()
    assert "predictions of partition 2 made before it was assigned here are not waiting" in capsys.readouterr().out


def test_a_read_back_that_fails_in_its_thread_is_said_and_restores_nothing(tmp_path, monkeypatch, capsys):
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    committed = OffsetAndMetadata(300, commit_note(last_timestamp_ms=1_000_000), -1)
    server.consumer = types.SimpleNamespace(committed=lambda tp, metadata, timeout_ms: committed, assignment=set)

    def unreachable(*args):
        raise TimeoutError("reading parts: no progress for 30 s (partition 1 at offset 0 of 300)")

    monkeypatch.setattr(serve, "waiting_records", unreachable)
    server.unrestored = {TopicPartition("parts", 1)}
    server._restore_waiting()
    server._process({TopicPartition("parts", 1): _messages(_records(np.zeros((5, 3))))})
    for thread in server.read_backs:
        thread.join()
    server._restore_read_back()
    assert server.counts["predictions_online"] == 5 and "restored_predictions" not in server.joiner.counts
    assert "partition 1 made before it was assigned here are not waiting for labels" in capsys.readouterr().out


def test_an_audit_log_on_a_full_disk_is_said_and_serving_goes_on(tmp_path, capsys):
    """/dev/full takes the open and refuses the write (ENOSPC), as a full disk does mid-stream."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.config = ConsumerConfig.from_dict({**server.config.to_dict(), "events": {"audit_log": "/dev/full"}})
    server.producer = types.SimpleNamespace(sent=[], send=lambda topic, **kw: server.producer.sent.append(kw))
    server._event_log(webhook=None).emit("trigger_check", fire=False)
    assert [orjson.loads(kw["value"])["type"] for kw in server.producer.sent] == ["trigger_check"]
    assert "trigger_check not appended to the audit log /dev/full (OSError" in capsys.readouterr().out


def test_a_partition_read_long_ago_keeps_that_time_in_its_commit_note(tmp_path, monkeypatch):
    """Every commit covers every partition read, and each one's note was stamped with the time
    of that commit: a partition whose tester had sent nothing for an hour, while another
    partition streamed on, had its waiting predictions judged an hour younger after a restart
    than they were (restored past their TTL). The note keeps when its last record was read."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    clock = types.SimpleNamespace(t=10_000.0)
    monkeypatch.setattr(serve.time, "time", lambda: clock.t)
    records = _records(np.zeros((4, 3)))
    quiet, busy = TopicPartition("parts", 0), TopicPartition("parts", 1)
    server._process({quiet: _messages(records[:2])})
    clock.t += 3600
    server._process({busy: [types.SimpleNamespace(**{**vars(m), "partition": 1}) for m in _messages(records[2:])]})
    sent = {}
    consumer = types.SimpleNamespace(assignment=lambda: {quiet, busy},
                                     commit_async=lambda offsets, callback: sent.update(offsets))
    server._commit(consumer)
    last_ts = records[1]["ts"] * 1000
    age = record_age_s(int(last_ts), read_note(sent[quiet].metadata), now=clock.t)
    assert age == 3600.0, sent[quiet].metadata
    assert record_age_s(int(records[3]["ts"] * 1000), read_note(sent[busy].metadata), now=clock.t) == 0.0


def test_a_read_back_of_several_partitions_keeps_the_newest_the_joiner_can_hold(tmp_path, monkeypatch):
    """Each partition is read up to the joiner's capacity; across partitions only the youngest
    ``buffer_size`` are kept (the others would be evicted on arrival) while the next is read."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.config = ConsumerConfig.from_dict({**server.config.to_dict(),
                                              "labels": {"topic": "parts.labels", "buffer_size": 4}})
    records = _records(np.zeros((6, 3)))
    by_partition = {0: [(50.0, records[0]), (30.0, records[1]), (10.0, records[2])],
                    1: [(40.0, records[3]), (20.0, records[4]), (5.0, records[5])]}
    asked, clock = [], types.SimpleNamespace(t=500.0)

    def waiting(topic, partition, offset, note, ttl_s, target, bootstrap, capacity, labels):
        asked.append(capacity)
        return Waiting(by_partition[partition], [])

    monkeypatch.setattr(serve.time, "monotonic", lambda: clock.t)
    monkeypatch.setattr(serve, "waiting_records", waiting)
    note = (1000.0, 1_000_000)
    server._read_back({TopicPartition("parts", 0): (3, note, None), TopicPartition("parts", 1): (3, note, None)}, None)
    entries = server.read_back.get_nowait()[0]
    assert asked == [4, 4]
    assert sorted(age for _, _, age in entries) == [5.0, 10.0, 20.0, 30.0]


def test_parts_read_back_first_age_while_the_other_partitions_are_read(tmp_path, monkeypatch):
    """Ages were counted as of each partition's own read and handed over as of the last: a
    read-back of many partitions (a minute at 300 tests) kept the first ones' predictions that
    long past their TTL."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.config = ConsumerConfig.from_dict({**server.config.to_dict(), "labels": {"topic": "parts.labels"}})
    records = _records(np.zeros((2, 3)))
    clock = types.SimpleNamespace(t=500.0)

    def waiting(topic, partition, offset, note, ttl_s, target, bootstrap, capacity, labels):
        if partition == 0:
            return Waiting([(10.0, records[0])], [])
        clock.t += 100.0  # reading partition 1 takes 100 s
        return Waiting([(1.0, records[1])], [])

    monkeypatch.setattr(serve.time, "monotonic", lambda: clock.t)
    monkeypatch.setattr(serve, "waiting_records", waiting)
    note = (1000.0, 1_000_000)
    server._read_back({TopicPartition("parts", 0): (1, note, None), TopicPartition("parts", 1): (1, note, None)}, None)
    entries = server.read_back.get_nowait()[0]
    assert sorted(age for _, _, age in entries) == [1.0, 110.0]


def test_partitions_lost_with_the_session_are_read_back_when_they_come_back(tmp_path):
    """A partition kept across a rebalance still has its predictions in the joiner; one lost
    when the session expired may have been served elsewhere meanwhile."""
    server = _server(tmp_path, {"task": "classification", "target": "passed"})
    server.config = ConsumerConfig.from_dict({**server.config.to_dict(), "labels": {"topic": "parts.labels"}})
    listener = serve.ForgetRevoked(server)
    mine, new, labels = TopicPartition("parts", 0), TopicPartition("parts", 1), TopicPartition("parts.labels", 0)
    listener.on_partitions_revoked({mine, labels})
    listener.on_partitions_assigned({mine, new, labels})
    assert server.unrestored == {new}
    server.unrestored.clear()
    listener.on_partitions_lost({mine, new, labels})
    listener.on_partitions_assigned({mine, labels})
    assert server.unrestored == {mine}
