"""Unit tests for the pure parts of stream_ct.retrain_worker (no Kafka): train_and_judge on simulated
records with a tmp registry (promote, reject, skip; unusable labels, an unusable champion), _fit's
recency weights, train_in_child and its time limit, and the worker's handling of a commit refused
after a rebalance, of a request that raises, and of a request whose version a stopped worker or
a failed attempt had registered."""

from __future__ import annotations

import copy
import random
import shutil
import time
import types
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError
from threadpoolctl import threadpool_limits

from stream_ct import retrain_worker
from stream_ct.config import ConsumerConfig
from stream_ct.events import EventLog
from stream_ct.record import part_key
from stream_ct.registry import Registry
from stream_ct.retrain_worker import (Outcome, RetrainWorker, join_labels, retrain_request, stale_reason,
                                      train_and_judge, train_in_child)
from stream_ct.simulate import Simulator
from stream_ct.training import build_estimator, evaluate, fit
from harness import register_copy

# Gates relaxed where the result would depend on the machine (latency on a shared host) or on
# wafer-to-wafer yield variation between training rows and the 750-row holdout (predicted rate).
RAW = {"consumer": {"name": "yield", "input_topic": "parts", "poll_max_records": 200},
       "gates": {"max_latency_p99_ms": 60_000.0, "max_fail_rate_gap": 0.15}}
CONFIG = ConsumerConfig.from_dict(RAW)
QUALITY = ["quality:rows", "quality:schema", "quality:missing", "quality:sentinels", "quality:constant",
           "quality:labels"]
GATES = QUALITY + ["absolute_metric", "beats_champion", "f1_floor", "fairness", "predicted_rate", "latency_p99"]


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def records():
    return list(Simulator(scenario="none", seed=1).generate(3000).records())


def shuffled_labels(records, seed=0):
    out = copy.deepcopy(records)
    labels = [r["passed"] for r in out]
    random.Random(seed).shuffle(labels)
    for r, y in zip(out, labels):
        r["passed"] = y
    return out


@pytest.fixture(scope="module")
def promoted(records, tmp_path_factory):
    """A registry whose first request was judged: (root, request, outcome)."""
    root = tmp_path_factory.mktemp("registry")
    with threadpool_limits(1):
        request = retrain_request(CONFIG, "manual", 0, {0: 3000})
        outcome = train_and_judge(request, records, Registry(root))
    return root, request, outcome


def test_first_request_is_promoted_without_champion(promoted, records):
    root, request, outcome = promoted
    reg = Registry(root)
    assert outcome.decision == "promoted", [g["detail"] for g in outcome.gates if not g["passed"]]
    assert outcome.version == 1
    assert reg.versions("yield") == [1] and reg.champion("yield") == 1
    assert [g["name"] for g in outcome.gates] == GATES
    assert all(g["passed"] for g in outcome.gates)
    by = {g["name"]: g for g in outcome.gates}
    assert by["beats_champion"]["detail"] == "no champion yet"
    assert by["quality:rows"]["detail"] == "3000 labeled rows >= minimum 1000"
    assert outcome.metrics["champion"] is None
    assert outcome.metrics["candidate"]["auc"] > 0.75

    meta = reg.meta("yield", 1)
    assert meta["decision"] == "promoted" and meta["gates"] == outcome.gates
    assert meta["parent_version"] is None
    assert meta["trigger"] == {"reason": "manual", "request_id": request["request_id"], "command_id": None,
                               "requested_at": request["requested_at"], "signals": []}
    assert meta["task"] == "classification" and meta["target"] == "passed"
    assert len(meta["feature_names"]) == 50
    assert meta["data_window"] == {
        "topic": "parts", "start_ts_ms": 0, "start_offsets": None, "end_offsets": {"0": 3000},
        "deleted_by_retention": {}, "rows": 3000,
        "unusable_labels": 0, "invalid_records": 0, "superseded": 0, "resent": 0, "never_measured": [],
        "rows_train": 2250, "rows_holdout": 750,
        "first_key": part_key(records[0]), "last_key": part_key(records[-1]),
        "first_ts": records[0]["ts"], "last_ts": records[-1]["ts"]}
    artifact = reg.load("yield", 1)  # checksums verified
    assert artifact.reference["X"].shape == (3000, 50)


def test_shuffled_labels_are_rejected_and_champion_stays(promoted, records, tmp_path):
    root, _, first = promoted
    shutil.copytree(root, tmp_path / "reg")
    reg = Registry(tmp_path / "reg")
    request = retrain_request(CONFIG, "drift", 0, {0: 3000})
    outcome = train_and_judge(request, shuffled_labels(records), reg)
    assert outcome.decision == "rejected" and outcome.version == 2
    by = {g["name"]: g for g in outcome.gates}
    assert by["absolute_metric"]["passed"] is False
    assert by["absolute_metric"]["value"] < 0.7
    assert by["absolute_metric"]["detail"] == f"auc {by['absolute_metric']['value']:.4f} < floor 0.7000"
    # the champion was judged on the same holdout (against the shuffled labels)
    assert outcome.metrics["champion"] is not None
    assert by["beats_champion"]["value"] == pytest.approx(
        outcome.metrics["candidate"]["auc"] - outcome.metrics["champion"]["auc"])
    assert reg.champion("yield") == 1
    assert reg.versions("yield") == [1, 2]
    meta = reg.meta("yield", 2)
    assert meta["decision"] == "rejected" and meta["parent_version"] == 1
    assert "drift.pkl" not in meta["files"]


def test_too_few_rows_is_skipped(records, tmp_path):
    reg = Registry(tmp_path)
    request = retrain_request(CONFIG, "schedule", 0, {0: 500})
    outcome = train_and_judge(request, records[:500], reg)
    assert outcome == Outcome(None, "skipped", outcome.gates, {"rows": 500})
    by = {g["name"]: g for g in outcome.gates}
    assert [g["name"] for g in outcome.gates] == QUALITY
    assert by["quality:rows"] == {"name": "quality:rows", "passed": False, "value": 500, "threshold": 1000,
                                  "detail": "500 labeled rows < minimum 1000"}
    assert reg.versions("yield") == [] and reg.champion("yield") is None


def test_unlabeled_records_do_not_count(records, tmp_path):
    recs = copy.deepcopy(records[:1500])
    for r in recs[:600]:
        r["passed"] = None  # labels not arrived yet
    outcome = train_and_judge(retrain_request(CONFIG, "manual", 0, {0: 1500}), recs, Registry(tmp_path))
    assert outcome.decision == "skipped" and outcome.metrics == {"rows": 900}
    assert outcome.gates[0]["detail"] == "900 labeled rows < minimum 1000"


def test_labels_that_are_not_finite_numbers_are_left_out_and_counted(records, tmp_path):
    """Serve dead-letters such label records; they reached sklearn here and failed every retrain."""
    recs = copy.deepcopy(records)
    for r, label in zip(recs[100:], ["PASS", "nan", float("nan"), float("inf")]):
        r["passed"] = label
    recs[104]["passed"] = None  # not labeled yet: not counted
    cfg = ConsumerConfig.from_dict(dict(RAW, gates=dict(RAW["gates"], min_metric=0.999)))  # rejected: quick
    outcome = train_and_judge(retrain_request(cfg, "manual", 0, {0: 3000}), recs, Registry(tmp_path))
    assert outcome.decision == "rejected" and outcome.unusable_labels == 4
    window = Registry(tmp_path).meta("yield", 1)["data_window"]
    assert (window["rows"], window["unusable_labels"]) == (2995, 4)


def test_a_part_whose_own_target_holds_no_label_is_out_of_the_reference_as_serve_never_charted_it(
        records, tmp_path, monkeypatch):
    """Serve dead-letters a part whose own target field (one the record schema does not check)
    holds a string or a list; the drift reference, the window as serve charted it, held it. A
    part whose label from the labels topic is no number was charted: it stays in the reference."""
    parts = copy.deepcopy(records)
    for r in parts:
        r["final_pass"] = int(r.pop("passed"))
    parts[100]["final_pass"], parts[101]["final_pass"], parts[102]["final_pass"] = "no", ["x"], None
    parts[103]["final_pass"] = "1"  # float() takes it: serve keeps it
    labels = [{**{k: parts[102][k] for k in ("lot_id", "wafer_id", "part_id")}, "final_pass": "n/a"}]
    monkeypatch.setattr(retrain_worker, "read_topic", lambda topic, *args, **kw: retrain_worker.TopicWindow(
        labels if topic == "labels" else copy.deepcopy(parts)))
    cfg = ConsumerConfig.from_dict(dict(RAW, model={"target": "final_pass"}, labels={"topic": "labels"},
                                        gates=dict(RAW["gates"], min_metric=0.999)))  # rejected: quick
    outcome = retrain_worker.read_and_train(retrain_request(cfg, "manual", 0, {0: 3000}), None, str(tmp_path))
    assert outcome.decision == "rejected" and outcome.unusable_labels == 3
    window = Registry(tmp_path).meta("yield", outcome.version)["data_window"]
    assert (window["rows"], window["unusable_labels"]) == (2997, 3)
    reference = Registry(tmp_path).load("yield", outcome.version).reference
    assert len(reference["X"]) == len(reference["groups"]) == 2998

def test_a_retested_part_trains_on_its_last_result_only_and_the_drift_reference_keeps_both(records, tmp_path):
    """STDF marks a repeated test sequence (``PART_FLG``); the first result of such a part was
    trained on as another part, with its first label. Serve charts both results as they come,
    so the drift reference keeps both: without the first ones, a floor's usual retests (first
    results out on a failing test) read as drift on that test."""
    recs = copy.deepcopy(records[:1500])
    retests = [dict(copy.deepcopy(r), supersedes="part") for r in recs[:200]]
    outcome = train_and_judge(retrain_request(CONFIG, "manual", 0, {0: 1700}), recs + retests, Registry(tmp_path))
    assert outcome.decision in ("promoted", "rejected")
    meta = Registry(tmp_path).meta("yield", 1)
    assert (meta["data_window"]["rows"], meta["data_window"]["superseded"]) == (1500, 200)
    reference = Registry(tmp_path).load("yield", 1).reference
    assert len(reference["X"]) == len(reference["groups"]) == 1700


def test_a_window_holding_a_file_published_twice_trains_and_judges_on_each_part_once(records, tmp_path):
    """The copies went into the training rows and, past the split, into the holdout: the
    candidate was judged on parts it had been trained on."""
    recs = copy.deepcopy(records[:1500])
    outcome = train_and_judge(retrain_request(CONFIG, "manual", 0, {0: 3000}), recs + copy.deepcopy(recs),
                              Registry(tmp_path))
    window = Registry(tmp_path).meta("yield", outcome.version)["data_window"]
    assert (window["rows"], window["resent"], window["rows_holdout"]) == (1500, 1500, 375)
    assert len(Registry(tmp_path).load("yield", outcome.version).reference["X"]) == 1500


def test_fairness_by_site_compares_each_head_s_sites_and_leaves_out_parts_without_one(records, tmp_path):
    """Site 0 of head 2 was merged with site 0 of head 1 (STDF numbers sites per head), and
    parts with a null site were compared as a site named "None"."""
    recs = copy.deepcopy(records[:1200])
    for i, r in enumerate(recs):
        r["head"], r["site"] = (1, 0) if i % 3 == 0 else (2, 0) if i % 3 == 1 else (2, None)
    config = ConsumerConfig.from_dict({**RAW, "gates": {**RAW.get("gates", {}), "fairness_by": "site",
                                                        "min_group_rows": 50}})
    outcome = train_and_judge(retrain_request(config, "manual", 0, {0: 1200}), recs, Registry(tmp_path))
    [gate] = [g for g in outcome.gates if g["name"] == "fairness"]
    assert gate["detail"].startswith("auc by site: 1/0 ") and ", 2/0 " in gate["detail"]
    assert "None" not in gate["detail"] and gate["detail"].count(",") == 1


def test_a_test_never_measured_in_the_window_is_left_out_and_named(records, tmp_path):
    """A test logged on every part but only ever as the STDF sentinel: the drift monitor cannot
    chart it (it raised, and every retrain failed); it is left out of the features."""
    recs = copy.deepcopy(records)
    for r in recs:
        r["tests"]["900:OPEN_SHORT"] = 9.9e37
    outcome = train_and_judge(retrain_request(CONFIG, "manual", 0, {0: 3000}), recs, Registry(tmp_path))
    assert outcome.decision == "promoted"
    meta = Registry(tmp_path).meta("yield", 1)
    assert meta["data_window"]["never_measured"] == ["900:OPEN_SHORT"]
    assert "900:OPEN_SHORT" not in meta["feature_names"] and len(meta["feature_names"]) == len(records[0]["tests"])


def test_the_sentinels_of_tests_left_out_as_never_measured_do_not_skip_the_window(records, tmp_path):
    """Three tests logged on every part only as 9.9e37 are left out of the features, yet their
    sentinels were counted: 5.66 % > 5 %, and every retrain of such a floor was skipped."""
    recs = copy.deepcopy(records)
    for r in recs:
        r["tests"].update({"900:A": 9.9e37, "901:B": 9.9e37, "902:C": 9.9e37})
    cfg = ConsumerConfig.from_dict(dict(RAW, gates=dict(RAW["gates"], min_metric=0.999)))  # rejected: quick
    outcome = train_and_judge(retrain_request(cfg, "manual", 0, {0: 3000}), recs, Registry(tmp_path))
    assert outcome.decision == "rejected"
    sentinels = {g["name"]: g for g in outcome.gates}["quality:sentinels"]
    assert sentinels["passed"] and sentinels["value"] == 0
    assert Registry(tmp_path).meta("yield", 1)["data_window"]["never_measured"] == ["900:A", "901:B", "902:C"]


def test_the_decision_reports_the_unusable_labels_and_invalid_records(tmp_path, monkeypatch):
    monkeypatch.setattr(retrain_worker, "train_in_child",
                        lambda *args: Outcome(1, "rejected", [], {}, rows=3000, unusable_labels=4, invalid_records=2))
    events = RecordingEvents()
    RetrainWorker(registry_path=str(tmp_path)).handle(retrain_request(CONFIG, "manual", 0, {0: 3000}),
                                                      RecordingOutbox(), events)
    decision = dict(events.emitted)["retrain_decision"]
    assert (decision["rows"], decision["unusable_labels"], decision["invalid_records"]) == (3000, 4, 2)


def test_records_of_the_window_that_do_not_decode_are_counted_in_the_registry_record(records, tmp_path, monkeypatch):
    """Serve dead-letters them and the window read left them out without a count."""
    monkeypatch.setattr(retrain_worker, "training_window",
                        lambda *args: retrain_worker.TopicWindow(records, invalid_records=3))
    cfg = ConsumerConfig.from_dict(dict(RAW, gates=dict(RAW["gates"], min_metric=0.999)))  # rejected: quick
    outcome = retrain_worker.read_and_train(retrain_request(cfg, "drift", 0, {0: 3003}), None, str(tmp_path))
    assert outcome.invalid_records == 3 and outcome.rows == len(records)
    window = Registry(tmp_path).meta("yield", outcome.version)["data_window"]
    assert (window["rows"], window["invalid_records"]) == (len(records), 3)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_an_unusable_champion_is_not_compared_and_the_other_gates_decide(promoted, records, tmp_path, damage):
    """Serve falls back from a champion whose files fail verification; a retrain must replace it,
    promoted directly (as at bootstrap: there is no champion to shadow)."""
    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    reg = Registry(tmp_path / "reg")
    model_file = reg.path("yield", 1) / "model.skops"
    if damage == "corrupt":
        model_file.write_bytes(model_file.read_bytes()[:-1] + b"x")
    else:
        model_file.unlink()
    cfg = ConsumerConfig.from_dict(dict(RAW, drift={"enabled": False}, deploy={"shadow_records": 1000}))
    outcome = train_and_judge(retrain_request(cfg, "drift", 0, {0: 3000}), records, reg)  # raised before
    assert outcome.decision == "promoted", [g["detail"] for g in outcome.gates if not g["passed"]]
    assert reg.champion("yield") == 2 and reg.meta("yield", 2)["parent_version"] == 1
    assert outcome.metrics["champion"] is None
    gate = {g["name"]: g for g in outcome.gates}["beats_champion"]
    reason = "IntegrityError: yield v1: model.skops sha256" if damage == "corrupt" else "FileNotFoundError"
    assert gate["passed"] and gate["value"] is None
    assert gate["detail"].startswith(f"champion v1 unusable: {reason}")
    assert gate["detail"].endswith("; the other gates decide")


@pytest.mark.parametrize("learned, now", [
    ({"task": "multiclass", "target": "soft_bin"}, {"task": "multiclass", "target": "hard_bin"}),
    ({"task": "regression", "target": "test_time_ms"}, {"task": "classification", "target": "passed"})])
def test_a_champion_of_another_target_or_task_is_not_compared(records, tmp_path, learned, now):
    """A definition that changes its target keeps its name: the soft-bin champion was judged on
    hard bins (accuracy 0, beaten by any candidate), and a regression champion of a definition
    now a classification raised AttributeError (no predict_proba) at every retrain."""
    reg = Registry(tmp_path)
    for model in (learned, now):
        cfg = ConsumerConfig.from_dict(dict(RAW, model=model, drift={"enabled": False},
                                            gates=dict(RAW["gates"], min_metric=0.0, fairness_by="")))
        outcome = train_and_judge(retrain_request(cfg, "manual", 0, {0: 3000}), records, reg)
    assert outcome.decision == "promoted" and reg.champion("yield") == 2
    assert outcome.metrics["champion"] is None
    gate = {g["name"]: g for g in outcome.gates}["beats_champion"]
    assert gate["passed"] and gate["value"] is None
    assert gate["detail"] == (f"champion v1 learned {learned['target']} ({learned['task']}), this definition "
                              f"{now['target']} ({now['task']}): not comparable; the other gates decide")


def test_no_matching_features_is_skipped(records, tmp_path):
    cfg = ConsumerConfig.from_dict(dict(RAW, features={"include": ["nothing:*"]}))
    outcome = train_and_judge(retrain_request(cfg, "manual", 0, {0: 3000}), records, Registry(tmp_path))
    assert outcome.decision == "skipped"
    assert [(g["name"], g["passed"]) for g in outcome.gates] == [("quality:rows", True), ("quality:schema", False)]


def test_a_window_without_the_target_names_it_not_the_features(records, tmp_path):
    # lot2.stdf.gz records no TEST_T: a test-time window has every test but no label, and the
    # skip blamed the feature patterns ("no test matched the feature patterns")
    cfg = ConsumerConfig.from_dict(dict(RAW, model={"task": "regression", "target": "test_time_ms"}))
    untimed = [{k: v for k, v in r.items() if k != "test_time_ms"} for r in records]
    outcome = train_and_judge(retrain_request(cfg, "bootstrap", 0, {0: 3000}), untimed, Registry(tmp_path))
    assert outcome.decision == "skipped"
    assert [(g["name"], g["passed"], g["detail"]) for g in outcome.gates] == [
        ("quality:rows", False, "0 labeled rows < minimum 1000 (no record in the window has a usable test_time_ms)")]


def test_a_window_of_nothing_but_sentinels_says_so(records, tmp_path):
    # every result 9.9e37 (a tester that lost its limits): no test is measured, so none is a feature
    broken = [dict(r, tests={k: 9.9e37 for k in r["tests"]}) for r in records]
    outcome = train_and_judge(retrain_request(CONFIG, "manual", 0, {0: 3000}), broken, Registry(tmp_path))
    failed = {g["name"]: g["detail"] for g in outcome.gates if not g["passed"]}
    assert outcome.decision == "skipped" and set(failed) == {"quality:schema", "quality:sentinels"}
    assert failed["quality:schema"] == "no test matched the feature patterns with a measured result"
    assert failed["quality:sentinels"].startswith(f"{len(records) * len(records[0]['tests'])} sentinel results")


@pytest.mark.parametrize("estimator", ["random_forest", "logistic_regression", "hist_gradient_boosting"])
def test_a_training_split_of_one_class_is_skipped_and_the_champion_stays(promoted, records, tmp_path, estimator):
    """Every failing part in the newest 25 % of the window (the holdout): random_forest raised
    IndexError, logistic_regression ValueError (the retrain failed with a traceback), and
    hist_gradient_boosting's one-class candidate was judged on the gates."""
    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    reg = Registry(tmp_path / "reg")
    recs = copy.deepcopy(records)
    for r in recs[:2250]:
        r["passed"] = 1
    failing = sum(r["passed"] == 0 for r in recs[2250:])
    assert failing >= 20  # the window's minority check alone passes
    cfg = ConsumerConfig.from_dict(dict(RAW, model={"estimator": estimator}))
    outcome = train_and_judge(retrain_request(cfg, "drift", 0, {0: 3000}), recs, reg)
    assert outcome.decision == "skipped" and outcome.version is None
    failed = {g["name"]: g for g in outcome.gates if not g["passed"]}
    assert list(failed) == ["quality:labels"]
    assert failed["quality:labels"]["value"] == failing
    assert failed["quality:labels"]["detail"] == (
        "training window has one class (all 2250 oldest rows passed = 1; every other class falls in the "
        "holdout, the newest 750); need both")
    assert reg.versions("yield") == [1] and reg.champion("yield") == 1


# --- _fit: recency weights -----------------------------------------------------------------------

class Capture:
    """Records the keyword arguments of fit."""

    def __init__(self):
        self.kwargs = None

    def fit(self, X, y, **kwargs):
        self.kwargs = kwargs
        return self


class CapturePipeline(Capture):
    steps = [("imputer", None), ("clf", None)]


def test_fit_without_half_life_passes_no_weights():
    est = Capture()
    assert fit(est, np.zeros((4, 1)), np.zeros(4), 0) is est
    assert est.kwargs == {}


def test_fit_weights_halve_every_half_life():
    est = Capture()
    fit(est, np.zeros((9, 1)), np.zeros(9), 4)
    w = est.kwargs["sample_weight"]
    np.testing.assert_allclose(w, 0.5 ** (np.arange(8, -1, -1) / 4))
    assert w[-1] == 1.0 and w[-5] == 0.5 and w[0] == 0.25  # the newest row weighs most


def test_fit_weights_go_to_the_pipeline_final_step():
    est = CapturePipeline()
    fit(est, np.zeros((3, 1)), np.zeros(3), 1)
    assert list(est.kwargs) == ["clf__sample_weight"]
    np.testing.assert_allclose(est.kwargs["clf__sample_weight"], [0.25, 0.5, 1.0])


@pytest.mark.parametrize("half_life", [0, 2000])
def test_fit_of_a_window_past_10000_rows_with_a_bin_seen_once(half_life):
    """scikit-learn's early stopping (on more than 10,000 rows) holds out a stratified tenth:
    one part in a rare soft bin raised ValueError ("The least populated classes in y have only
    1 member") and every retrain of such a window failed."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_500, 3))
    y = np.where(X[:, 0] > 0, 11.0, 12.0)
    y[500] = 57.0
    model = fit(build_estimator("multiclass", "hist_gradient_boosting"), X, y, half_life)
    assert set(model.classes_) == {11.0, 12.0, 57.0}
    big = build_estimator("multiclass", "hist_gradient_boosting")
    assert fit(big, X, np.where(y == 57.0, 12.0, y), 0).n_iter_ < 150  # two or more of each: early stopping


def flipped_history(n=3000, recent=600, seed=0):
    """Old rows follow the flipped rule, the most recent ``recent`` rows the current one."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] > 0).astype(float)
    y[: n - recent] = 1.0 - y[: n - recent]
    X_test = rng.normal(size=(1000, 2))
    return X, y, X_test, (X_test[:, 0] > 0).astype(float)


@pytest.mark.parametrize("kind", ["logistic_regression", "hist_gradient_boosting"])
def test_recency_weights_make_old_flipped_labels_matter_less(kind):
    X, y, X_test, y_test = flipped_history()
    plain = fit(build_estimator("classification", kind), X, y, 0)
    recent = fit(build_estimator("classification", kind), X, y, 200)
    assert evaluate("classification", plain, X_test, y_test)["auc"] < 0.2  # learns the old, flipped rule
    assert evaluate("classification", recent, X_test, y_test)["auc"] > 0.75  # follows the recent rule


def test_recency_half_life_in_train_and_judge(records, tmp_path):
    """The oldest half of the window has flipped labels: recency weights make them matter less."""
    recs = copy.deepcopy(records)
    for r in recs[:1500]:
        r["passed"] = 1 - r["passed"]
    raw = dict(RAW, model={"estimator": "logistic_regression"},
               gates=dict(RAW["gates"], min_metric=0.99))  # rejected either way: no drift calibration
    plain = train_and_judge(retrain_request(ConsumerConfig.from_dict(raw), "manual", 0, {0: 3000}), recs,
                            Registry(tmp_path / "a"))
    raw["retrain"] = {"recency_half_life": 200}
    weighted = train_and_judge(retrain_request(ConsumerConfig.from_dict(raw), "manual", 0, {0: 3000}), recs,
                               Registry(tmp_path / "b"))
    assert plain.metrics["candidate"]["auc"] < 0.5  # dominated by the flipped history
    assert weighted.metrics["candidate"]["auc"] > plain.metrics["candidate"]["auc"] + 0.15


# --- train_in_child ------------------------------------------------------------------------------

def test_train_in_child_returns_the_outcome(records, tmp_path):
    """A rejected candidate (floor set out of reach) keeps this test quick: no drift calibration."""
    cfg = ConsumerConfig.from_dict(dict(RAW, gates=dict(RAW["gates"], min_metric=0.999)))
    outcome = train_in_child(retrain_request(cfg, "manual", 0, {0: 3000}), records, str(tmp_path), timeout_s=120)
    assert isinstance(outcome, Outcome)
    assert outcome.decision == "rejected" and outcome.version == 1
    assert Registry(tmp_path).versions("yield") == [1] and Registry(tmp_path).champion("yield") is None


def test_train_in_child_reports_an_error(records, tmp_path):
    request = retrain_request(CONFIG, "manual", 0, {0: 3000})
    request["config"]["model"]["task"] = "clustering"
    with pytest.raises(RuntimeError, match=r"ConfigError: request .*: \[model\] task = 'clustering'"):
        train_in_child(request, records, str(tmp_path), timeout_s=120)


def test_train_in_child_timeout_leaves_no_version(promoted, records, tmp_path):
    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    reg = Registry(tmp_path / "reg")
    before = reg.versions("yield")
    with pytest.raises(TimeoutError, match="training did not finish within"):
        train_in_child(retrain_request(CONFIG, "manual", 0, {0: 3000}), records, str(reg.root), timeout_s=0.01)
    assert reg.versions("yield") == before == [1]
    assert sorted(p.name for p in (reg.root / "yield").iterdir() if p.name.startswith("v")) == ["v1"]
    assert reg.champion("yield") == 1


def test_train_in_child_timeout_on_an_empty_registry(records, tmp_path):
    with pytest.raises(TimeoutError):
        train_in_child(retrain_request(CONFIG, "manual", 0, {0: 3000}), records, str(tmp_path), timeout_s=0.01)
    assert Registry(tmp_path).versions("yield") == []
    folder = tmp_path / "yield"
    assert not folder.exists() or all(p.name.startswith(".tmp-") for p in folder.iterdir())


class RefusingConsumer:
    """A consumer dropped from its group while the broker was away: its commit is refused."""

    def commit(self, offsets):
        raise CommitFailedError("the consumer is not part of an active group")


def test_a_refused_commit_does_not_end_the_worker_and_the_request_read_again_is_not_trained_twice(monkeypatch):
    worker = RetrainWorker()
    handled = []
    monkeypatch.setattr(worker, "handle", lambda request, outbox, events: handled.append(request["request_id"])
                        or Outcome(1, "promoted", [], {}))
    request = orjson.dumps(retrain_request(CONFIG, "bootstrap", 0, {0: 3000}))
    worker._handle_message(request, outbox=None, events=None)
    assert worker._commit(RefusingConsumer(), TopicPartition("ct.retrain", 0), 7)  # raised before: the worker died
    worker._handle_message(request, outbox=None, events=None)  # redelivered after the rejoin
    assert len(handled) == 1


def test_a_request_whose_config_does_not_validate_is_settled_as_failed(tmp_path):
    """Raised out of run() before the commit: every restart read the request again and crashed."""
    request = retrain_request(CONFIG, "drift", 0, {0: 3000})
    request["config"]["deploy"]["canary"] = 1  # from a newer serve, during a rolling upgrade
    worker, events = RetrainWorker(registry_path=str(tmp_path)), RecordingEvents()
    worker._handle_message(orjson.dumps(request), RecordingOutbox(), events)
    assert [kind for kind, _ in events.emitted] == ["retrain_failed"]
    failed = events.emitted[0][1]
    assert failed["final"] is True and failed["request_id"] == request["request_id"]
    assert failed["error"].startswith("ConfigError: ") and "unknown key [deploy] canary" in failed["error"]
    assert request["request_id"] in worker.settled_requests  # committed next, like any settled request


def test_a_request_s_events_reach_the_audit_log_of_the_consumer_that_asked(tmp_path, monkeypatch, capsys):
    """Serve appends its events to ``[events] audit_log``; the worker's, the retrain decision among
    them, were on ct.events only. A relative path is relative to where the worker runs, as
    ``[registry] path`` is; an audit log that cannot be written is logged, and the worker goes on."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(retrain_worker, "train_in_child", lambda *args: Outcome(1, "rejected", [], {}, rows=3000))
    (tmp_path / "a-file").write_text("")
    worker, outbox = RetrainWorker(), RecordingOutbox()
    events = EventLog(outbox, "retrain-worker", consumer="*")
    for audit_log in ("audit/yield.jsonl", "", "a-file/yield.jsonl"):
        config = ConsumerConfig.from_dict(dict(RAW, events={"audit_log": audit_log}))
        worker._handle_message(orjson.dumps(retrain_request(config, "drift", 0, {0: 3000})), outbox, events)
    audited = [orjson.loads(line) for line in (tmp_path / "audit" / "yield.jsonl").read_bytes().splitlines()]
    assert audited == [value for _, _, value in outbox.sent[:2]]
    assert [e["type"] for e in audited] == ["retrain_started", "retrain_decision"]
    assert audited[1]["decision"] == "rejected" and audited[1]["request_id"] == outbox.sent[0][2]["request_id"]
    assert [value["type"] for _, _, value in outbox.sent] == ["retrain_started", "retrain_decision"] * 3
    assert len(worker.settled_requests) == 3
    lines = [line for line in capsys.readouterr().out.splitlines() if "audit log" in line]
    assert len(lines) == 2 and lines[1].startswith(
        f"retrain-worker: retrain_decision not appended to the audit log {tmp_path}/a-file/yield.jsonl "
        "(NotADirectoryError: ")


def test_a_test_time_champion_that_learns_the_tester_passes_the_fairness_gate_by_tester(tmp_path):
    """Test time is each tester's overhead plus what the results say: on simulator seed 1 a
    champion of the results alone was rejected (r2 by tester 0.41-0.77, spread 0.35 > 0.20)."""
    records = list(Simulator(scenario="none", seed=1).generate(5000).records())
    verdicts = {}
    for fields in ("[]", '["tester"]'):
        config = ConsumerConfig.load(Path(__file__).resolve().parents[1] / "consumers" / "test-time.toml",
                                     [f"features.fields={fields}", "drift.enabled=false"])
        registry = Registry(tmp_path / fields)
        outcome = train_and_judge(retrain_request(config, "manual", 0, {0: 5000}), records, registry)
        fairness = next(g for g in outcome.gates if g["name"] == "fairness")
        verdicts[fields] = (outcome.decision, fairness["passed"], outcome.metrics["candidate"]["r2"])
    assert verdicts["[]"][:2] == ("rejected", False)
    assert verdicts['["tester"]'][:2] == ("promoted", True) and verdicts['["tester"]'][2] > verdicts["[]"][2] + 0.1
    champion = registry.load("test-time", outcome.version)  # loads: HGB's own categorical support would not
    assert champion.meta["categories"] == {"tester": ["T1", "T2", "T3", "T4"]}
    assert len(champion.meta["feature_names"]) == 50  # the tests alone: the drift monitor charts them
    again = train_and_judge(retrain_request(config, "manual", 0, {0: 5000}), records, registry)
    assert "vs champion" in next(g for g in again.gates if g["name"] == "beats_champion")["detail"]  # judged against it


def test_a_request_whose_model_is_not_its_config_s_is_settled_as_failed(tmp_path):
    """A hand-made request naming another model: the candidate was registered and made champion
    under the config's model, then the announcement of the request's model failed."""
    request = dict(retrain_request(CONFIG, "manual", 0, {0: 3000}), model="binning")
    worker, events = RetrainWorker(registry_path=str(tmp_path)), RecordingEvents()
    worker._handle_message(orjson.dumps(request), RecordingOutbox(), events)
    [(kind, failed)] = events.emitted
    assert kind == "retrain_failed" and failed["final"] is True
    assert failed["error"] == "ValueError: the request names model 'binning', its config 'yield'"
    assert not (tmp_path / "yield").exists()


def test_a_broker_outage_while_handling_a_request_does_not_settle_it(monkeypatch):
    """Kafka being away is not the request's fault: it is read again, not reported as failed."""
    def unreachable(request, outbox, events):
        raise KafkaConnectionError("broker away")

    worker, events = RetrainWorker(), RecordingEvents()
    monkeypatch.setattr(worker, "handle", unreachable)
    request = retrain_request(CONFIG, "drift", 0, {0: 3000})
    with pytest.raises(KafkaConnectionError):
        worker._handle_message(orjson.dumps(request), RecordingOutbox(), events)
    assert events.emitted == [] and request["request_id"] not in worker.settled_requests


def test_retrain_seconds_is_the_whole_request_with_its_failed_attempts(tmp_path, monkeypatch):
    """stream_ct_retrain_seconds read a decision's ``seconds``, its last attempt's: a request whose
    attempts all timed out, the slowest of all, was never observed."""
    class Clock:
        now = 0.0

        def monotonic(self):
            return self.now

        def __getattr__(self, name):
            return getattr(time, name)

    clock = Clock()

    def times_out(*args, **kwargs):
        clock.now += 300.0
        raise TimeoutError("training took longer than 300 s")

    monkeypatch.setattr(retrain_worker, "time", clock)
    monkeypatch.setattr(retrain_worker, "train_in_child", times_out)
    worker = RetrainWorker(registry_path=str(tmp_path))
    events = types.SimpleNamespace(emit=lambda kind, **fields: worker.metrics.on_event({"type": kind, **fields}))
    worker._handle_message(orjson.dumps(retrain_request(CONFIG, "drift", 0, {0: 3000})), RecordingOutbox(), events)
    assert worker.metrics.retrains.value(model="yield", decision="failed") == 1.0
    _, total, count = worker.metrics.retrain_seconds._children.get(("yield",), (None, 0.0, 0))
    assert (count, total) == (1, 300.0 * CONFIG.retrain.max_attempts)


class RecordingOutbox:
    def __init__(self):
        self.sent = []

    def send(self, topic, key, value):
        self.sent.append((topic, key, orjson.loads(value)))

    def flush(self):
        return True


class RecordingEvents:
    def __init__(self):
        self.emitted = []

    def emit(self, kind, **fields):
        self.emitted.append((kind, fields))


def settle_again(root, request, monkeypatch):
    """``handle`` a request read again by a new worker: (outcome, announcements, events)."""
    def must_not_train(*args, **kwargs):
        raise AssertionError("a request whose version is registered was trained again")

    monkeypatch.setattr(retrain_worker, "train_in_child", must_not_train)
    outbox, events = RecordingOutbox(), RecordingEvents()
    outcome = RetrainWorker(registry_path=str(root)).handle(request, outbox, events)
    return outcome, outbox.sent, events.emitted


@pytest.mark.parametrize("stopped_before", ["the announcement", "the champion pointer"])
def test_a_version_registered_by_a_stopped_worker_is_announced_not_trained_again(promoted, tmp_path, monkeypatch,
                                                                                 stopped_before):
    root, request, first = promoted
    shutil.copytree(root, tmp_path / "reg")
    if stopped_before == "the champion pointer":  # stopped between registry.save and set_champion
        (tmp_path / "reg" / "yield" / "CHAMPION").unlink()
    outcome, sent, emitted = settle_again(tmp_path / "reg", request, monkeypatch)
    reg = Registry(tmp_path / "reg")
    assert (outcome.version, outcome.decision) == (1, "promoted") and outcome.gates == first.gates
    assert reg.versions("yield") == [1] and reg.champion("yield") == 1
    assert [(topic, key, value["version"]) for topic, key, value in sent] == [("ct.models", b"yield", 1)]
    assert [kind for kind, _ in emitted] == ["retrain_decision"]
    decision = emitted[0][1]
    assert (decision["version"], decision["decision"], decision["request_id"]) == (1, "promoted", request["request_id"])
    assert decision["detail"].endswith("announced now, not trained again")


def test_a_superseded_version_of_a_stopped_worker_is_not_announced(promoted, tmp_path, monkeypatch):
    root, request, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    reg = Registry(tmp_path / "reg")
    newer = register_copy(reg, "yield", 1, "promoted", parent_version=1,
                          trigger={"reason": "drift", "request_id": "another", "command_id": None, "signals": []})
    reg.set_champion("yield", newer)
    outcome, sent, emitted = settle_again(tmp_path / "reg", request, monkeypatch)
    assert (outcome.version, outcome.decision) == (1, "promoted")
    assert sent == [] and reg.champion("yield") == newer  # no rollback to the request's own version
    assert emitted[0][1]["detail"].endswith("not announced: superseded (champion v2), not trained again")


def test_an_attempt_that_fails_after_registering_its_version_is_settled_not_retried(promoted, tmp_path, monkeypatch):
    """A child that registered its version and then timed out (or died): the version is settled
    as the decision, not trained again by the next attempt."""
    root, request, first = promoted
    (tmp_path / "reg" / "yield").mkdir(parents=True)
    attempts = []

    def registers_then_times_out(request, records, registry_root, timeout_s, bootstrap):
        attempts.append(registry_root)
        shutil.copytree(root / "yield" / "v1", tmp_path / "reg" / "yield" / "v1")
        raise TimeoutError("training did not finish within 0.01 s")

    monkeypatch.setattr(retrain_worker, "train_in_child", registers_then_times_out)
    outbox, events = RecordingOutbox(), RecordingEvents()
    outcome = RetrainWorker(registry_path=str(tmp_path / "reg")).handle(request, outbox, events)
    assert len(attempts) == 1 < CONFIG.retrain.max_attempts
    assert (outcome.version, outcome.decision) == (1, "promoted") and Registry(tmp_path / "reg").champion("yield") == 1
    assert [kind for kind, _ in events.emitted] == ["retrain_started", "retrain_decision"]
    assert events.emitted[1][1]["detail"] == (
        "v1 was registered for this request by attempt 1, which then failed (TimeoutError: training did not "
        "finish within 0.01 s); announced now, not trained again")
    assert [(topic, value["version"]) for topic, _, value in outbox.sent] == [("ct.models", 1)]


def test_a_damaged_meta_json_of_an_old_version_does_not_stop_retraining(promoted, records, tmp_path, monkeypatch):
    """Every request looks through the registered versions; one truncated record must not make
    each of them fail (the champion it names, if any, is judged as unusable)."""
    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    meta = tmp_path / "reg" / "yield" / "v1" / "meta.json"
    meta.write_bytes(meta.read_bytes()[:100])
    monkeypatch.setattr(retrain_worker, "train_in_child",
                        lambda request, _, registry_root, *a: train_and_judge(request, records, Registry(registry_root)))
    request = retrain_request(CONFIG, "drift", 0, {0: 3000})
    outcome = RetrainWorker(registry_path=str(tmp_path / "reg")).handle(request, RecordingOutbox(), RecordingEvents())
    assert (outcome.version, outcome.decision) == (2, "promoted")
    beats = next(g for g in outcome.gates if g["name"] == "beats_champion")
    assert beats["detail"].startswith("champion v1 unusable: IntegrityError: yield v1: ") and "is damaged" in beats["detail"]


def test_every_instance_answers_a_manual_command_but_it_is_trained_once(records, tmp_path):
    """Each serve instance sends a request for the same ``stream-ct retrain`` command; the first
    is trained, the others are skipped naming its version. Another command is trained."""
    registry = Registry(tmp_path)
    first = retrain_request(CONFIG, "manual: probe card", 0, {0: 3000}, command_id="c1")
    assert stale_reason(first, registry) is None
    train_and_judge(first, records, registry)
    again = retrain_request(CONFIG, "manual: probe card", 0, {0: 3000}, command_id="c1")
    assert stale_reason(again, registry) == "v1 answered the same command (c1)"
    assert stale_reason(retrain_request(CONFIG, "manual: new lot", 0, {0: 3000}, command_id="c2"), registry) is None


def test_a_later_unusable_label_does_not_erase_a_usable_one():
    """The worker took the last label record per part, so a null or a 'PASS' sent after a label
    (serve dead-letters both, after the first had joined) left the part unlabeled in the
    retrain window while serve had learned its label."""
    parts = [{"lot_id": "L", "wafer_id": "W", "part_id": str(i)} for i in range(4)]
    labels = [dict(parts[0], passed=1), dict(parts[0], passed=None), dict(parts[0], passed="PASS"),
              dict(parts[1], passed=0), dict(parts[1], passed=1),  # a correction
              dict(parts[2], passed="PASS"), dict(parts[3], passed=None)]
    join_labels(parts, labels, "passed")
    assert [p["passed"] for p in parts] == [1, 1, "PASS", None]  # 'PASS' is counted as unusable


def test_a_window_gone_from_kafka_is_skipped_with_its_reason(tmp_path, monkeypatch):
    from stream_ct import retrain_worker

    def gone(*args):
        raise retrain_worker.WindowGone("the window is no longer in parts: retention deleted it (...)")

    monkeypatch.setattr(retrain_worker, "training_window", gone)
    outcome = retrain_worker.read_and_train(retrain_request(CONFIG, "drift", 0, {0: 3000}), None, str(tmp_path))
    assert outcome.decision == "skipped" and outcome.version is None and outcome.rows == 0
    [gate] = outcome.gates
    assert gate["name"] == "window" and not gate["passed"] and "retention deleted it" in gate["detail"]
    assert Registry(tmp_path).versions("yield") == []


def test_a_window_whose_front_retention_deleted_trains_on_the_rest_and_says_how_much_is_gone(
        records, tmp_path, monkeypatch, capsys):
    """It trained on what was left and said nothing: the registry's record gave the window's
    start offsets as if every record from them had been read."""
    monkeypatch.setattr(retrain_worker, "training_window",
                        lambda *args: retrain_worker.TopicWindow(records, {"0": 1200}))
    outcome = retrain_worker.read_and_train(retrain_request(CONFIG, "drift", 0, {0: 4200}, {0: 0}), None,
                                            str(tmp_path))
    assert outcome.deleted_by_retention == {"0": 1200} and outcome.rows == len(records)
    assert Registry(tmp_path).meta("yield", outcome.version)["data_window"]["deleted_by_retention"] == {"0": 1200}
    worker = RetrainWorker()
    monkeypatch.setattr(worker, "handle", lambda request, outbox, events: outcome)
    worker._handle_message(orjson.dumps(retrain_request(CONFIG, "drift", 0, {0: 4200})), None, None)
    assert "deleted_by_retention=1200 records of partition 0)" in capsys.readouterr().out


def test_the_log_line_of_a_skipped_or_rejected_request_says_why(monkeypatch, capsys):
    """It said only "-> skipped": the data-quality check or the failed gate was in ct.events alone."""
    worker = RetrainWorker()
    outcomes = iter([
        Outcome(None, "skipped", [{"name": "quality:rows", "passed": False, "detail": "0 labeled rows < minimum 300"}],
                {"rows": 0}),
        Outcome(2, "rejected", [{"name": "absolute_metric", "passed": True, "detail": "auc 0.86 >= floor 0.70"},
                                {"name": "beats_champion", "passed": False, "detail": "gain +0.0002 < margin +0.0100"}],
                {}),
        Outcome(3, "promoted", [{"name": "beats_champion", "passed": True, "detail": "gain +0.05"}], {})])
    monkeypatch.setattr(worker, "handle", lambda request, outbox, events: next(outcomes))
    for _ in range(3):
        worker._handle_message(orjson.dumps(retrain_request(CONFIG, "bootstrap", 0, {0: 3000})), None, None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("retrain-worker: yield bootstrap -> skipped: quality:rows: 0 labeled rows < minimum 300 (")
    assert lines[1].startswith("retrain-worker: yield bootstrap -> rejected: beats_champion: gain +0.0002 < margin ")
    assert lines[2].startswith("retrain-worker: yield bootstrap -> promoted (version=3")


def test_a_skipped_retrain_is_listed_by_models_list_with_why_and_when_it_was_asked(promoted, tmp_path, monkeypatch,
                                                                                    capsys):
    """A skip registers no version, so ``models list`` showed nothing of it (a rejected candidate
    is there with its failed gates): whoever asked for the retrain could not tell it was handled.
    A request read again after a worker stopped is listed once."""
    from stream_ct.cli import main

    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    skip = Outcome(None, "skipped", [{"name": "quality:rows", "passed": False, "value": 900, "threshold": 1000,
                                      "detail": "900 labeled rows < minimum 1000"}], {"rows": 900})
    monkeypatch.setattr(retrain_worker, "train_in_child", lambda *args: skip)
    request = retrain_request(CONFIG, "manual: new probe card", 0, {0: 900}, command_id="c1")
    for _ in range(2):
        RetrainWorker(registry_path=str(tmp_path / "reg")).handle(request, RecordingOutbox(), RecordingEvents())
    consumer = str(Path(__file__).resolve().parents[1] / "consumers" / "yield.toml")
    assert main(["models", "list", consumer, "--registry", str(tmp_path / "reg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    asked = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(request["requested_at"]))
    assert len(lines) == 3 and lines[1].startswith("*       1  promoted")
    assert lines[2].startswith(f"        -  skipped   {asked}  manual: new probe card       900  ")
    assert lines[2].endswith("quality:rows: 900 labeled rows < minimum 1000")
    assert main(["models", "list", consumer, "--registry", str(tmp_path / "reg"), "--json"]) == 0
    row = orjson.loads(capsys.readouterr().out)[1]
    assert row == {"version": None, "champion": False, "decision": "skipped", "reason": "manual: new probe card",
                   "requested_at": request["requested_at"], "created_at": row["created_at"], "rows": 900,
                   "failed_gates": ["quality:rows"], "detail": "quality:rows: 900 labeled rows < minimum 1000", "request_id": request["request_id"]}

def test_a_retrain_that_failed_for_good_is_listed_by_models_list_with_its_error(promoted, tmp_path, monkeypatch,
                                                                                  capsys):
    """A request whose every attempt failed (a crash, a timeout) or whose config does not validate
    makes no version either, and models list showed nothing of it. The registry of a request that
    does not validate is its config's as written; a request that failed and was then trained after
    all (read again: its worker stopped before the commit) is listed by its version alone."""
    from stream_ct.cli import main

    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")
    monkeypatch.chdir(tmp_path)  # the config's [registry] path, relative to where the worker runs

    def times_out(*args):
        raise TimeoutError("training did not finish within 300 s; the child was killed")

    monkeypatch.setattr(retrain_worker, "train_in_child", times_out)
    config = ConsumerConfig.from_dict(dict(RAW, registry={"path": "reg"}))
    timed_out = retrain_request(config, "manual: new probe card", 0, {0: 3000})
    invalid = retrain_request(config, "drift", 0, {0: 3000})
    invalid["config"]["deploy"]["canary"] = 1  # from a newer serve
    trained_after_all = retrain_request(config, "schedule", 0, {0: 3000})
    worker = RetrainWorker()
    for request in (timed_out, invalid, trained_after_all):
        worker._handle_message(orjson.dumps(request), RecordingOutbox(), RecordingEvents())
    register_copy(Registry("reg"), "yield", 1, "rejected", trigger={"reason": "schedule", "command_id": None,
                                                                     "request_id": trained_after_all["request_id"]})
    consumer = str(Path(__file__).resolve().parents[1] / "consumers" / "yield.toml")
    capsys.readouterr()  # the worker's log lines
    assert main(["models", "list", consumer, "--registry", "reg", "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [(r["version"], r["decision"], r["reason"]) for r in rows] == [
        (1, "promoted", "manual"), (None, "failed", "manual: new probe card"), (None, "failed", "drift"),
        (2, "rejected", "schedule")]
    assert rows[1] == {"version": None, "champion": False, "decision": "failed", "reason": "manual: new probe card",
                       "requested_at": timed_out["requested_at"], "created_at": rows[1]["created_at"], "rows": None,
                       "failed_gates": [], "request_id": timed_out["request_id"],
                       "detail": "TimeoutError: training did not finish within 300 s; the child was killed"}
    assert rows[2]["detail"].startswith("ConfigError: ") and "unknown key [deploy] canary" in rows[2]["detail"]
    assert main(["models", "list", consumer, "--registry", "reg"]) == 0
    line = capsys.readouterr().out.splitlines()[2]
    assert line.startswith("        -  failed    ") and line.endswith(  # no rows, no metric: blank
        "manual: new probe card" + " " * 21 + "TimeoutError: training did not finish within 300 s; the child "
        "was killed")


def test_a_registry_that_cannot_keep_a_failed_request_does_not_stop_the_worker(tmp_path, monkeypatch, capsys):
    """Noted from the handler of a request that raised: an error there would end the worker."""
    (tmp_path / "a-file").write_text("")
    request = retrain_request(CONFIG, "drift", 0, {0: 3000})
    request["config"]["deploy"]["canary"] = 1
    worker, events = RetrainWorker(registry_path=str(tmp_path / "a-file")), RecordingEvents()
    worker._handle_message(orjson.dumps(request), RecordingOutbox(), events)
    assert [kind for kind, _ in events.emitted] == ["retrain_failed"]
    assert request["request_id"] in worker.settled_requests
    assert f"yield drift: not noted in {tmp_path}/a-file (NotADirectoryError: " in capsys.readouterr().out


def test_a_candidate_judged_against_a_champion_replaced_meanwhile_is_not_promoted(promoted, records, tmp_path):
    """Two workers training at once both judged against the same champion, and the later to
    register became champion without being compared with the other's."""
    root, _, _ = promoted
    shutil.copytree(root, tmp_path / "reg")

    class OtherWorkerFirst(Registry):
        def champion_lock(self, name):  # the other worker registered and promoted its candidate just before
            other = self.save(name, self.load(name, 1).estimator, {"X": np.zeros((1, 1))},
                              {"decision": "promoted", "parent_version": 1})
            self.set_champion(name, other)
            return super().champion_lock(name)

    reg = OtherWorkerFirst(tmp_path / "reg")
    cfg = ConsumerConfig.from_dict(dict(RAW, drift={"enabled": False}, gates={"min_improvement": -1.0}))
    outcome = train_and_judge(retrain_request(cfg, "drift", 0, {0: 3000}), records, reg)
    assert outcome.decision == "rejected" and reg.champion("yield") == 2 and outcome.version == 3
    gate = outcome.gates[-1]
    assert gate["name"] == "champion_unchanged" and not gate["passed"]
    assert gate["detail"] == "v2 became champion while this candidate was judged against v1: not compared with it, so not promoted"
    assert Registry(tmp_path / "reg").meta("yield", 3)["decision"] == "rejected"


def test_a_worker_stopped_while_kafka_is_away_says_it_stopped_and_exits_0(monkeypatch, capsys):
    """It stopped without a word; and kafka-python's close raises when its flush times out, so a
    worker stopped during an outage ended with a traceback instead."""

    class AwayProducer:
        closed = False

        def flush(self, timeout=None):
            raise KafkaTimeoutError("Timeout waiting for future")

        def close(self, timeout=None):
            self.flush(timeout)  # kafka-python's close flushes first, and raises before it closes
            self.closed = True

    class IdleConsumer:
        def poll(self, timeout_ms):
            return {}

        def close(self):
            pass

    monkeypatch.setattr(retrain_worker, "ensure_control_topics", lambda bootstrap: None)
    monkeypatch.setattr(retrain_worker, "make_producer", lambda bootstrap: AwayProducer())
    monkeypatch.setattr(retrain_worker, "make_consumer", lambda *args, **kwargs: IdleConsumer())
    monkeypatch.setattr(retrain_worker.signal, "signal", lambda signum, handler: None)  # the test process's own
    assert RetrainWorker(exit_when_idle_s=0.01).run() == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "retrain-worker: Kafka did not acknowledge the last events within 10 s; exiting anyway",
        "retrain-worker: stopped after settling 0 requests"]


def test_a_worker_that_stops_before_settling_a_request_still_says_it_stopped(monkeypatch, capsys):
    """It returned from the middle of its loop, past its last line."""

    class OneRequest:
        def poll(self, timeout_ms):
            return {TopicPartition("ct.retrain", 0): [types.SimpleNamespace(value=b"{}", offset=0)]}

        def close(self):
            pass

    class Producer:
        def flush(self, timeout=None):
            pass

        def close(self, timeout=None):
            pass

    worker = RetrainWorker()
    monkeypatch.setattr(retrain_worker, "ensure_control_topics", lambda bootstrap: None)
    monkeypatch.setattr(retrain_worker, "make_producer", lambda bootstrap: Producer())
    monkeypatch.setattr(retrain_worker, "make_consumer", lambda *args, **kwargs: OneRequest())
    monkeypatch.setattr(retrain_worker.signal, "signal", lambda signum, handler: None)
    monkeypatch.setattr(worker, "_handle_message", lambda value, outbox, events: None)
    monkeypatch.setattr(retrain_worker.Outbox, "flush", lambda self: False)  # stopping before it was acknowledged
    assert worker.run() == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "retrain-worker: stopping before the request was settled in Kafka; it is read again on restart",
        "retrain-worker: stopped after settling 0 requests"]


def test_models_list_shows_a_failed_request_whose_fields_are_not_what_serve_writes(tmp_path, monkeypatch, capsys):
    """A request that raised is settled as failed and kept in UNVERSIONED.jsonl as it came: one
    whose reason is not a string, or whose time asked is not a number (not serve's, say), made
    ``models list`` raise at its line, for that model, from then on."""
    from stream_ct.cli import main

    monkeypatch.chdir(tmp_path)
    config = ConsumerConfig.from_dict(dict(RAW, registry={"path": "reg"}))
    odd = retrain_request(config, "drift", 0, {0: 3000})
    odd.update(reason=5, requested_at="yesterday")
    RetrainWorker()._handle_message(orjson.dumps(odd), RecordingOutbox(), RecordingEvents())
    consumer = str(Path(__file__).resolve().parents[1] / "consumers" / "yield.toml")
    capsys.readouterr()
    assert main(["models", "list", consumer, "--registry", "reg"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("        -  failed    " + " " * 19 + "  5 ") and "AttributeError" in line


def test_a_request_whose_names_hold_a_nul_is_settled_not_a_crash_at_every_restart(tmp_path, monkeypatch, capsys):
    """A path with a NUL byte raises ValueError, not OSError: noting such a request in the
    registry, or opening its consumer's audit log, ended the worker before the request was
    committed, so every restart read it again and ended the same way."""
    monkeypatch.chdir(tmp_path)
    for field, value in (("model", "yield\u0000"), ("audit_log", "audit\u0000.jsonl")):
        request = retrain_request(ConsumerConfig.from_dict(dict(RAW, registry={"path": "reg"})), "drift", 0, {0: 3000})
        if field == "model":
            request["model"] = value  # not its config's model: the request raises
        else:
            request["config"]["events"]["audit_log"] = value
            request["config"]["deploy"]["canary"] = 1  # it raises too
        worker = RetrainWorker()
        producer = types.SimpleNamespace(send=lambda topic, **kw: None)
        worker._handle_message(orjson.dumps(request), RecordingOutbox(), EventLog(producer, "retrain-worker", "*"))
        assert request["request_id"] in worker.settled_requests, field
