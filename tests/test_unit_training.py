"""Unit tests for stream_ct.training: estimators, metrics, data quality and the gates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from stream_ct.config import ESTIMATORS
from stream_ct.training import PRIMARY_METRIC, build_estimator, evaluate, metrics_from_scores, score


def gates_api():
    """data_quality / judge / GateResult (imported per test so the estimator tests stand alone)."""
    from stream_ct.training import GateResult, data_quality, judge

    return GateResult, data_quality, judge

RNG = np.random.default_rng(1)
X = RNG.normal(size=(300, 4))
X[RNG.random(X.shape) < 0.1] = np.nan
Y_CLS = (np.nan_to_num(X[:, 0]) + 0.2 * RNG.normal(size=300) > 0).astype(float)
Y_REG = 3.0 * np.nan_to_num(X[:, 1]) + 0.1 * RNG.normal(size=300) + 5.0


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP oversubscription on a busy machine makes tiny fits slow; one thread is plenty."""
    with threadpool_limits(1):
        yield


@pytest.mark.parametrize("task, kind", [(t, k) for t, kinds in ESTIMATORS.items() for k in kinds])
def test_build_estimator_fits_with_nan_and_learns(task, kind):
    y = Y_CLS if task == "classification" else Y_REG
    est = build_estimator(task, kind, seed=3)
    est.fit(X[:200], y[:200])
    s = score(task, est, X[200:])
    assert s.shape == (100,) and np.isfinite(s).all()
    m = evaluate(task, est, X[200:], y[200:])
    if task == "classification":
        assert ((s >= 0) & (s <= 1)).all()
        assert m["auc"] > 0.8
    else:
        assert m["r2"] > 0.5


def test_build_estimator_is_deterministic_for_a_seed():
    a = build_estimator("classification", "random_forest", seed=7).fit(X, Y_CLS)
    b = build_estimator("classification", "random_forest", seed=7).fit(X, Y_CLS)
    np.testing.assert_array_equal(score("classification", a, X), score("classification", b, X))


def test_build_estimator_unknown_kind():
    with pytest.raises(ValueError) as exc:
        build_estimator("classification", "xgboost")
    assert str(exc.value) == "unknown estimator 'xgboost'"


class Fixed:
    """An estimator stub with known scores."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def predict_proba(self, X):
        return np.column_stack([1 - self.scores, self.scores])

    def predict(self, X):
        return self.scores


def test_classification_metrics_exact():
    # pairs (pos, neg): 0.9>0.3, 0.9>0.6, 0.4>0.3, 0.4<0.6 -> AUC 3/4; labels at 0.5: [1,0,0,1]
    m = evaluate("classification", Fixed([0.9, 0.4, 0.3, 0.6]), np.zeros((4, 1)), np.array([1.0, 1.0, 0.0, 0.0]))
    assert m == {"auc": 0.75, "accuracy": 0.5, "f1": 0.5}


def test_classification_threshold_is_inclusive():
    m = metrics_from_scores("classification", np.array([0.5, 0.49]), np.array([1.0, 0.0]))
    assert m == {"auc": 1.0, "accuracy": 1.0, "f1": 1.0}


def test_classification_single_class_auc_is_nan():
    m = metrics_from_scores("classification", np.array([0.2, 0.7]), np.array([1.0, 1.0]))
    assert math.isnan(m["auc"]) and m["accuracy"] == 0.5 and m["f1"] == pytest.approx(2 / 3)


def test_regression_metrics_exact():
    m = evaluate("regression", Fixed([1.5, 2.0, 3.0]), np.zeros((3, 1)), np.array([1.0, 2.0, 4.0]))
    assert m["mae"] == pytest.approx(0.5)
    assert m["mape"] == pytest.approx((0.5 / 1 + 0 + 1 / 4) / 3)
    assert m["r2"] == pytest.approx(1 - 1.25 / (42 / 9))
    assert set(m) == {"r2", "mae", "mape"}


def test_regression_mape_skips_zero_targets():
    m = metrics_from_scores("regression", np.array([1.0, 1.0]), np.array([0.0, 2.0]))
    assert m["mape"] == pytest.approx(0.5)
    m = metrics_from_scores("regression", np.array([1.0, 1.0]), np.array([0.0, 0.0]))
    assert math.isnan(m["mape"])


def test_primary_metric():
    assert PRIMARY_METRIC == {"classification": "auc", "regression": "r2"}


def test_data_quality_too_few_rows():
    GateResult, data_quality, judge = gates_api()
    g = data_quality("classification", np.array([0.0, 1.0] * 5), min_rows=11, min_minority=1)
    assert g == GateResult("data_quality", False, 10, 11, "10 labeled rows < minimum 11")


def test_data_quality_minority_too_small():
    GateResult, data_quality, judge = gates_api()
    y = np.array([1.0] * 98 + [0.0] * 2)
    g = data_quality("classification", y, min_rows=50, min_minority=3)
    assert g == GateResult("data_quality", False, 2, 3, "minority class has 2 rows < minimum 3")
    y = np.array([0.0] * 100)
    assert data_quality("classification", y, 50, 1).detail == "minority class has 0 rows < minimum 1"


def test_data_quality_pass():
    GateResult, data_quality, judge = gates_api()
    y = np.array([1.0] * 97 + [0.0] * 3)
    assert data_quality("classification", y, 100, 3) == GateResult("data_quality", True, 100, 100, "100 labeled rows")


def test_data_quality_regression_ignores_minority():
    GateResult, data_quality, judge = gates_api()
    g = data_quality("regression", np.zeros(20), min_rows=20, min_minority=1000)
    assert g.passed and g.detail == "20 labeled rows"


def test_judge_floor_pass_no_champion():
    GateResult, data_quality, judge = gates_api()
    gates = judge("classification", {"auc": 0.8}, None, min_metric=0.7, min_improvement=0.0)
    assert [g.to_dict() for g in gates] == [
        {"name": "absolute_metric", "passed": True, "value": 0.8, "threshold": 0.7,
         "detail": "auc 0.8000 >= floor 0.7000"},
        {"name": "beats_champion", "passed": True, "value": None, "threshold": None, "detail": "no champion yet"},
    ]


def test_judge_floor_fail():
    GateResult, data_quality, judge = gates_api()
    gates = judge("regression", {"r2": 0.3}, None, min_metric=0.5, min_improvement=0.0)
    assert gates[0] == GateResult("absolute_metric", False, 0.3, 0.5, "r2 0.3000 < floor 0.5000")
    assert isinstance(gates[0].passed, bool)


def test_judge_floor_equal_passes():
    GateResult, data_quality, judge = gates_api()
    assert judge("classification", {"auc": 0.7}, None, 0.7, 0.0)[0].passed is True


def test_judge_beats_champion_pass_and_fail_with_margin():
    GateResult, data_quality, judge = gates_api()
    ok = judge("classification", {"auc": 0.80}, {"auc": 0.75}, 0.7, 0.02)[1]
    assert ok.name == "beats_champion" and ok.passed is True
    assert ok.value == pytest.approx(0.05) and ok.threshold == 0.02
    assert ok.detail == "auc 0.8000 vs champion 0.7500: gain +0.0500 >= margin +0.0200"
    bad = judge("classification", {"auc": 0.80}, {"auc": 0.75}, 0.7, 0.10)[1]
    assert bad.passed is False
    assert bad.detail == "auc 0.8000 vs champion 0.7500: gain +0.0500 < margin +0.1000"
    worse = judge("regression", {"r2": 0.6}, {"r2": 0.7}, 0.5, 0.0)[1]
    assert worse.passed is False and worse.value == pytest.approx(-0.1)
    assert worse.detail == "r2 0.6000 vs champion 0.7000: gain -0.1000 < margin +0.0000"


def test_judge_equal_to_champion_passes_zero_margin():
    GateResult, data_quality, judge = gates_api()
    assert judge("classification", {"auc": 0.8}, {"auc": 0.8}, 0.7, 0.0)[1].passed is True


def test_judge_nan_candidate_fails_floor():
    GateResult, data_quality, judge = gates_api()
    gates = judge("classification", {"auc": float("nan")}, None, 0.7, 0.0)
    assert gates[0].passed is False
