"""Unit tests for stream_ct.gates: every gate's verdict, value, threshold and detail text; run_gates on
a real small dataset; crafted bad candidates; the [gates] and [deploy] config sections."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from stream_ct.config import ConfigError, ConsumerConfig, DeploySection, GateSection
from stream_ct.gates import (GateResult, absolute_metric, beats_champion, fairness, latency, predicted_rate,
                             run_gates, secondary_metric)
from stream_ct.training import build_estimator, evaluate


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


class Fixed:
    """An estimator stub with known scores (cycled to the input's length)."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def _s(self, X):
        return self.scores[np.arange(len(X)) % len(self.scores)]

    def predict_proba(self, X):
        s = self._s(X)
        return np.column_stack([1 - s, s])

    def predict(self, X):
        return self._s(X)


class Slow:
    """Scores everything 0.5, slowly (busy for ``seconds`` of CPU time, or asleep with ``sleep``);
    records the batch shapes it was given."""

    def __init__(self, seconds: float, sleep: bool = False):
        self.seconds, self.sleep, self.shapes = seconds, sleep, []

    def predict_proba(self, X):
        self.shapes.append(X.shape)
        if self.sleep:
            time.sleep(self.seconds)
        else:
            started = time.thread_time()
            while time.thread_time() - started < self.seconds:
                pass
        return np.full((len(X), 2), 0.5)


def config(**gates):
    return ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts", "poll_max_records": 100},
                                     "gates": gates})


# --- absolute_metric -----------------------------------------------------------------------------

def test_absolute_metric_pass_and_fail():
    assert absolute_metric("classification", {"auc": 0.8, "f1": 0.1}, 0.7) == GateResult(
        "absolute_metric", True, 0.8, 0.7, "auc 0.8000 >= floor 0.7000")
    assert absolute_metric("classification", {"auc": 0.65}, 0.7) == GateResult(
        "absolute_metric", False, 0.65, 0.7, "auc 0.6500 < floor 0.7000")
    assert absolute_metric("classification", {"auc": 0.7}, 0.7).passed is True  # the floor itself passes


def test_absolute_metric_regression_uses_r2():
    assert absolute_metric("regression", {"r2": 0.42, "mae": 1.0}, 0.5) == GateResult(
        "absolute_metric", False, 0.42, 0.5, "r2 0.4200 < floor 0.5000")


def test_absolute_metric_nan_fails():
    r = absolute_metric("classification", {"auc": float("nan")}, 0.7)
    assert r.passed is False and r.detail == "auc nan < floor 0.7000"


def test_gate_result_to_dict():
    assert GateResult("g", True, 1.0, None, "d").to_dict() == {
        "name": "g", "passed": True, "value": 1.0, "threshold": None, "detail": "d"}


# --- beats_champion ------------------------------------------------------------------------------

def test_beats_champion_without_champion_passes():
    assert beats_champion("classification", {"auc": 0.5}, None, 0.01) == GateResult(
        "beats_champion", True, None, 0.01, "no champion yet")


def test_beats_champion_pass():
    r = beats_champion("classification", {"auc": 0.85}, {"auc": 0.80}, 0.02)
    assert (r.name, r.passed, r.threshold) == ("beats_champion", True, 0.02)
    assert r.value == pytest.approx(0.05)
    assert r.detail == "auc 0.8500 vs champion 0.8000 on the same holdout: gain +0.0500 >= margin +0.0200"


def test_beats_champion_fail():
    r = beats_champion("regression", {"r2": 0.60}, {"r2": 0.62}, 0.0)
    assert (r.name, r.passed, r.threshold) == ("beats_champion", False, 0.0)
    assert r.value == pytest.approx(-0.02)
    assert r.detail == "r2 0.6000 vs champion 0.6200 on the same holdout: gain -0.0200 < margin +0.0000"


def test_beats_champion_tie_passes_zero_margin_and_fails_positive_margin():
    assert beats_champion("classification", {"auc": 0.8}, {"auc": 0.8}, 0.0).passed is True
    assert beats_champion("classification", {"auc": 0.8}, {"auc": 0.8}, 0.001).passed is False



def test_beats_champion_gain_of_exactly_the_margin_passes():
    # 563/1000 - 553/1000 is 0.009999999999999898 in floats: it used to fail "gain +0.0100 < margin +0.0100"
    r = beats_champion("multiclass", {"accuracy": 563 / 1000}, {"accuracy": 553 / 1000}, 0.01)
    assert r.passed is True and r.value == 0.01
    assert r.detail.endswith("gain +0.0100 >= margin +0.0100")

# --- secondary_metric ----------------------------------------------------------------------------

def test_f1_floor_pass_and_fail():
    assert secondary_metric("classification", {"f1": 0.6}, 0.5, 0.0) == GateResult(
        "f1_floor", True, 0.6, 0.5, "f1 0.6000 >= floor 0.5000")
    assert secondary_metric("classification", {"f1": 0.4}, 0.5, 0.0) == GateResult(
        "f1_floor", False, 0.4, 0.5, "f1 0.4000 < floor 0.5000")


def test_f1_floor_zero_is_off():
    assert secondary_metric("classification", {"f1": 0.0}, 0.0, 0.0) == GateResult(
        "f1_floor", True, 0.0, 0.0, "f1 0.0000 >= floor 0.0000")


def test_mape_ceiling_pass_and_fail():
    assert secondary_metric("regression", {"mape": 0.05}, 0.0, 0.1) == GateResult(
        "mape_ceiling", True, 0.05, 0.1, "mape 0.0500 <= ceiling 0.1000")
    assert secondary_metric("regression", {"mape": 0.2}, 0.0, 0.1) == GateResult(
        "mape_ceiling", False, 0.2, 0.1, "mape 0.2000 > ceiling 0.1000")


def test_mape_ceiling_zero_is_off():
    assert secondary_metric("regression", {"mape": 7.5}, 0.9, 0.0) == GateResult(
        "mape_ceiling", True, 7.5, None, "mape 7.5000 no ceiling set")


# --- fairness ------------------------------------------------------------------------------------

def fairness_data():
    """A: AUC 1.0 (200 rows); B: AUC 0.75 (200 rows); C: 50 rows with AUC 0 (below min_rows);
    D: 150 rows of a single class (ignored for classification)."""
    groups, scores, y = [], [], []
    groups += ["A"] * 200; scores += [0.9, 0.1] * 100; y += [1, 0] * 100
    groups += ["B"] * 200; scores += [0.9, 0.4, 0.3, 0.6] * 50; y += [1, 1, 0, 0] * 50
    groups += ["C"] * 50; scores += [0.1, 0.9] * 25; y += [1, 0] * 25
    groups += ["D"] * 150; scores += [0.2] * 150; y += [1] * 150
    return np.array(scores), np.array(y, dtype=float), np.array(groups)


def test_fairness_fails_on_spread_ignoring_small_and_single_class_groups():
    s, y, g = fairness_data()
    r = fairness("classification", s, y, g, "fab", max_spread=0.15, min_rows=100)
    assert (r.name, r.passed, r.threshold) == ("fairness", False, 0.15)
    assert r.value == pytest.approx(0.25)
    assert r.detail == "auc by fab: A 1.000, B 0.750; spread 0.2500 > 0.1500"


def test_fairness_passes_within_spread():
    s, y, g = fairness_data()
    r = fairness("classification", s, y, g, "fab", max_spread=0.3, min_rows=100)
    assert r.passed is True and r.value == pytest.approx(0.25)
    assert r.detail == "auc by fab: A 1.000, B 0.750; spread 0.2500 <= 0.3000"


def test_fairness_small_group_counts_when_min_rows_allows():
    s, y, g = fairness_data()
    r = fairness("classification", s, y, g, "tester", max_spread=0.15, min_rows=50)
    assert r.value == pytest.approx(1.0)  # C (AUC 0) now compared; D still single-class
    assert r.detail == "auc by tester: A 1.000, B 0.750, C 0.000; spread 1.0000 > 0.1500"


def test_fairness_fewer_than_two_groups_passes_naming_the_groups_without_a_metric():
    """D has 150 rows of one class: the verdict said "fewer than two fab groups with 100+ rows"."""
    s, y, g = fairness_data()
    keep = g != "B"
    assert fairness("classification", s[keep], y[keep], g[keep], "fab", 0.15, 100) == GateResult(
        "fairness", True, 0.0, 0.15, "fewer than two fab groups with 100+ rows and a defined auc (D: one class): "
                                     "nothing to compare")
    keep = (g == "A") | (g == "C")
    assert fairness("classification", s[keep], y[keep], g[keep], "fab", 0.15, 100).detail == (
        "fewer than two fab groups with 100+ rows: nothing to compare")
    y = np.concatenate([np.arange(200.0), np.full(200, 9.0)])
    assert fairness("regression", y, y, np.repeat(["T1", "T2"], 200), "tester", 0.15, 100).detail == (
        "fewer than two tester groups with 100+ rows and a defined r2 (T2: one target value): nothing to compare")


def test_fairness_says_when_no_record_carries_its_field():
    s, y, _ = fairness_data()
    assert fairness("classification", s, y, np.full(len(y), ""), "testr", 0.15, 100).detail == (
        "no holdout record carries a testr: nothing to compare")


def test_records_without_the_field_form_no_group():
    """Parts with no fab recorded (absent: "", null: "None") were compared as fabs of their own:
    "auc by fab:  0.750, A 1.000; spread 0.2500 > 0.1500" failed the candidate."""
    s, y, g = fairness_data()
    g = np.where(g == "B", "", g)  # B's 200 rows carry no fab
    r = fairness("classification", s, y, g, "fab", max_spread=0.15, min_rows=100)
    assert r.passed and r.detail == ("fewer than two fab groups with 100+ rows and a defined auc (D: one class): "
                                     "nothing to compare")


def test_fairness_leaves_out_a_group_whose_target_is_constant():
    """A tester that logs the same test time for every part: R² is 0 there for any error short
    of none, and the candidate was rejected ("r2 by tester: A 0.976, B 0.978, C 0.000")."""
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(800, 20, 400), np.full(200, 900.0)])
    s = y + np.concatenate([rng.normal(0, 3, 400), np.full(200, 0.5)])  # C predicted within 0.5 ms
    g = np.array(["A"] * 200 + ["B"] * 200 + ["C"] * 200)
    r = fairness("regression", s, y, g, "tester", 0.15, 100)
    assert r.passed and r.detail == "r2 by tester: A 0.976, B 0.978; spread 0.0024 <= 0.1500"


def test_fairness_regression_uses_r2_and_keeps_groups_regardless_of_classes():
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    s = y.copy()
    s[200:] = y[200:] + rng.normal(size=200)  # group B is noisy
    g = np.array(["A"] * 200 + ["B"] * 200)
    r = fairness("regression", s, y, g, "site", 0.15, 100)
    assert r.passed is False and r.value > 0.5
    assert r.detail.startswith("r2 by site: A 1.000, B ")



def test_fairness_leaves_out_a_group_its_metric_is_undefined_on_whatever_its_name():
    # R² of a one-row group is NaN: it used to fail the gate (spread nan) when its name sorted first
    rng = np.random.default_rng(0)
    y = rng.normal(size=201)
    s = y + 0.1 * rng.normal(size=201)
    for one in ("T0", "T9"):
        g = np.array(["T1"] * 100 + ["T2"] * 100 + [one])
        r = fairness("regression", s, y, g, "tester", 0.2, min_rows=1)
        assert r.passed is True and r.value == pytest.approx(0.0045, abs=1e-4)
        assert one not in r.detail

# --- predicted_rate ------------------------------------------------------------------------------

def test_predicted_rate_pass_and_fail():
    # the predicted rate is the mean predicted probability: 3.6 / 6 = 0.600 vs observed 4 / 6
    y = np.array([1, 1, 0, 1, 0, 1.0])
    s = np.array([.9, .8, .2, .7, .4, .6])
    r = predicted_rate(s, y, 0.05)
    assert (r.name, r.passed, r.threshold) == ("predicted_rate", False, 0.05)
    assert r.value == pytest.approx(1 / 15)
    assert r.detail == "predicted positive rate 0.600 vs observed 0.667: gap 0.067 > 0.050"
    r = predicted_rate(s, y, 0.1)
    assert r.passed is True
    assert r.detail == "predicted positive rate 0.600 vs observed 0.667: gap 0.067 <= 0.100"


def test_predicted_rate_calibrated_scores_pass_with_zero_gap():
    # a calibrated model on an imbalanced problem: never above 0.5 for the negatives, yet no gap
    y = np.array([1, 1, 1, 0, 1, 1, 1, 0.0])
    assert predicted_rate(np.full(8, 0.75), y, 0.0) == GateResult(
        "predicted_rate", True, 0.0, 0.0, "predicted positive rate 0.750 vs observed 0.750: gap 0.000 <= 0.000")


def test_predicted_rate_all_pass():
    r = predicted_rate(np.full(6, 1.0), np.array([1, 1, 0, 1, 0, 1.0]), 0.05)
    assert r.passed is False and r.value == pytest.approx(1 / 3)
    assert r.detail == "predicted positive rate 1.000 vs observed 0.667: gap 0.333 > 0.050"


# --- latency -------------------------------------------------------------------------------------

def test_latency_fails_for_a_slow_estimator():
    est = Slow(0.02)
    X = np.zeros((4, 3))
    r = latency("classification", est, X, batch_rows=10, max_p99_ms=5.0, repeats=3)
    assert (r.name, r.passed, r.threshold) == ("latency_p99", False, 5.0)
    assert r.value >= 20.0
    assert r.detail == f"p99 {r.value:.1f} ms per batch of 10 rows > 5.0 ms"
    assert est.shapes == [(10, 3)] * 4  # warm-up + 3 repeats, each a full serving batch (rows cycled)


def test_latency_counts_the_scoring_thread_s_cpu_time_not_waiting():
    """On a busy 2-core machine, waiting for a core tripled the wall time of a binning model's
    batch and rejected its bootstraps (p99 282-527 ms > 250 ms)."""
    r = latency("classification", Slow(0.02, sleep=True), np.zeros((4, 3)), batch_rows=10, max_p99_ms=5.0,
                repeats=3)
    assert r.passed and r.value < 5.0


def test_latency_passes_for_a_fast_estimator():
    r = latency("regression", Fixed([1.0]), np.zeros((5, 2)), batch_rows=100, max_p99_ms=1000.0, repeats=5)
    assert r.passed is True and 0 <= r.value < 1000.0
    assert r.detail == f"p99 {r.value:.1f} ms per batch of 100 rows <= 1000.0 ms"


# --- run_gates on a real small dataset -----------------------------------------------------------

RNG = np.random.default_rng(42)
N = 1200
XS = RNG.normal(size=(N, 4))
FAB = np.where(np.arange(N) % 2 == 0, "FAB1", "FAB2")
Y = (XS[:, 0] + 0.5 * XS[:, 1] + 0.5 * RNG.normal(size=N) > -0.8).astype(float)  # about 3/4 pass
Y_REG = 2.0 * XS[:, 0] + 0.1 * RNG.normal(size=N) + 10.0
TRAIN, HOLD = slice(0, 900), slice(900, N)

RELAXED = dict(max_latency_p99_ms=60_000.0, max_fail_rate_gap=0.1)


def test_run_gates_classification_all_pass():
    cfg = config(**RELAXED)
    est = build_estimator("classification", "logistic_regression").fit(XS[TRAIN], Y[TRAIN])
    m = evaluate("classification", est, XS[HOLD], Y[HOLD])
    gates = run_gates(cfg, est, XS[HOLD], Y[HOLD], FAB[HOLD], m, None)
    assert [g.name for g in gates] == ["absolute_metric", "beats_champion", "f1_floor", "fairness",
                                       "predicted_rate", "latency_p99"]
    assert all(g.passed for g in gates), [g.detail for g in gates if not g.passed]
    assert gates[0].value == m["auc"] and gates[0].threshold == 0.7
    assert gates[1].detail == "no champion yet"
    assert gates[3].detail.startswith("auc by fab: FAB1 ")
    assert "per batch of 100 rows" in gates[5].detail  # [consumer] poll_max_records


def test_run_gates_against_a_better_champion_fails_beats_champion():
    cfg = config(min_improvement=0.0, **RELAXED)
    est = build_estimator("classification", "logistic_regression").fit(XS[TRAIN], Y[TRAIN])
    m = evaluate("classification", est, XS[HOLD], Y[HOLD])
    gates = {g.name: g for g in run_gates(cfg, est, XS[HOLD], Y[HOLD], FAB[HOLD], m, {"auc": 0.999})}
    assert gates["beats_champion"].passed is False
    assert gates["beats_champion"].value == pytest.approx(m["auc"] - 0.999)


def test_run_gates_regression_has_no_predicted_rate():
    cfg = ConsumerConfig.from_dict({"consumer": {"name": "r", "input_topic": "parts", "poll_max_records": 50},
                                    "model": {"task": "regression", "target": "test_time_ms", "estimator": "ridge"},
                                    "gates": {"max_mape": 0.05, "max_latency_p99_ms": 60_000.0}})
    est = build_estimator("regression", "ridge").fit(XS[TRAIN], Y_REG[TRAIN])
    m = evaluate("regression", est, XS[HOLD], Y_REG[HOLD])
    gates = run_gates(cfg, est, XS[HOLD], Y_REG[HOLD], FAB[HOLD], m, None)
    assert [g.name for g in gates] == ["absolute_metric", "beats_champion", "mape_ceiling", "fairness",
                                       "latency_p99"]
    assert all(g.passed for g in gates), [g.detail for g in gates if not g.passed]
    assert gates[2].threshold == 0.05 and gates[2].value == m["mape"]


# --- crafted bad candidates ----------------------------------------------------------------------

def test_candidate_on_shuffled_labels_fails_absolute_metric():
    cfg = config(**RELAXED)
    shuffled = np.random.default_rng(3).permutation(Y[TRAIN])
    est = build_estimator("classification", "hist_gradient_boosting").fit(XS[TRAIN], shuffled)
    m = evaluate("classification", est, XS[HOLD], Y[HOLD])
    gates = {g.name: g for g in run_gates(cfg, est, XS[HOLD], Y[HOLD], FAB[HOLD], m, None)}
    assert gates["absolute_metric"].passed is False
    assert gates["absolute_metric"].value < 0.7
    assert gates["absolute_metric"].detail == f"auc {m['auc']:.4f} < floor 0.7000"


def test_all_pass_candidate_fails_predicted_rate():
    cfg = config(**RELAXED)
    est = Fixed([0.99])
    m = evaluate("classification", est, XS[HOLD], Y[HOLD])
    gates = {g.name: g for g in run_gates(cfg, est, XS[HOLD], Y[HOLD], FAB[HOLD], m, None)}
    observed = float(Y[HOLD].mean())
    r = gates["predicted_rate"]
    assert r.passed is False and r.value == pytest.approx(0.99 - observed)
    assert r.detail == f"predicted positive rate 0.990 vs observed {observed:.3f}: gap {0.99 - observed:.3f} > 0.100"


def test_candidate_good_on_fab1_random_on_fab2_fails_fairness():
    rng = np.random.default_rng(7)
    n = 2000
    X = rng.normal(size=(n, 3))
    fab = np.where(np.arange(n) % 2 == 0, "FAB1", "FAB2")
    X[:, 2] = fab == "FAB2"  # the model can tell the fabs apart
    y = np.where(fab == "FAB1", X[:, 0] > 0, rng.random(n) < 0.5).astype(float)  # FAB2 labels are noise
    est = build_estimator("classification", "hist_gradient_boosting").fit(X[:1500], y[:1500])
    m = evaluate("classification", est, X[1500:], y[1500:])
    gates = {g.name: g for g in run_gates(config(**RELAXED), est, X[1500:], y[1500:], fab[1500:], m, None)}
    r = gates["fairness"]
    assert r.passed is False and r.value > 0.3
    assert re.fullmatch(r"auc by fab: FAB1 (0\.9\d\d|1\.000), FAB2 0\.[3-6]\d\d; spread 0\.\d{4} > 0\.1500", r.detail)


# --- [gates] and [deploy] config sections --------------------------------------------------------

def test_gates_and_deploy_defaults():
    cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"}})
    assert cfg.gates == GateSection(min_metric=0.70, min_improvement=0.0, min_f1=0.0, max_mape=0.0,
                                    fairness_by="fab", max_group_spread=0.15, min_group_rows=100,
                                    max_fail_rate_gap=0.10, max_latency_p99_ms=250.0, max_flag_rate=0.03)
    assert cfg.deploy == DeploySection(shadow_records=0, rollback_drop=0.05, rollback_min_labels=1000)


def test_gates_and_deploy_overrides_and_types():
    cfg = ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"},
                                    "gates": {"min_metric": 0.8, "max_latency_p99_ms": 250, "fairness_by": "tester"},
                                    "deploy": {"shadow_records": 5000, "rollback_drop": 0.1}})
    assert cfg.gates.min_metric == 0.8 and cfg.gates.fairness_by == "tester"
    assert cfg.gates.max_latency_p99_ms == 250.0 and isinstance(cfg.gates.max_latency_p99_ms, float)
    assert cfg.deploy.shadow_records == 5000 and cfg.deploy.rollback_drop == 0.1
    assert cfg.to_dict()["gates"]["fairness_by"] == "tester"


@pytest.mark.parametrize("section, values, message", [
    ("gates", {"min_group_rows": 1.5}, "<dict>: [gates] min_group_rows = 1.5 must be an integer"),
    ("gates", {"fairness_by": 3}, "<dict>: [gates] fairness_by = 3 must be a string"),
    ("deploy", {"rollback_drop": "5%"}, "<dict>: [deploy] rollback_drop = '5%' must be a number"),
    ("deploy", {"shadow": 1}, "<dict>: unknown key [deploy] shadow; known keys: shadow_records, rollback_drop, "
                              "rollback_min_labels"),
])
def test_gates_and_deploy_errors(section, values, message):
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.from_dict({"consumer": {"name": "y", "input_topic": "parts"}, section: values})
    assert str(exc.value) == message
