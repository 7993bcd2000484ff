"""Unit tests for stream_ct.training: estimators and metrics (gates: test_unit_gates.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from stream_ct.config import ESTIMATORS
from stream_ct.training import PRIMARY_METRIC, build_estimator, evaluate, metrics_from_scores, score


RNG = np.random.default_rng(1)
X = RNG.normal(size=(300, 4))
X[RNG.random(X.shape) < 0.1] = np.nan
Y_CLS = (np.nan_to_num(X[:, 0]) + 0.2 * RNG.normal(size=300) > 0).astype(float)
Y_REG = 3.0 * np.nan_to_num(X[:, 1]) + 0.1 * RNG.normal(size=300) + 5.0
Y_MULTI = np.digitize(np.nan_to_num(X[:, 0]) + 0.2 * RNG.normal(size=300), [-0.5, 0.5]).astype(float)
TARGETS = {"classification": Y_CLS, "multiclass": Y_MULTI, "regression": Y_REG, "anomaly": None}


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP oversubscription on a busy machine makes tiny fits slow; one thread is plenty."""
    with threadpool_limits(1):
        yield


@pytest.mark.parametrize("task, kind", [(t, k) for t, kinds in ESTIMATORS.items() for k in kinds])
def test_build_estimator_fits_with_nan_and_learns(task, kind):
    y = TARGETS[task]
    est = build_estimator(task, kind, seed=3)
    est.fit(X[:200], None if y is None else y[:200])
    s = score(task, est, X[200:])
    assert s.shape == (100,) and np.isfinite(s).all()
    m = evaluate(task, est, X[200:], None if y is None else y[200:])
    if task == "classification":
        assert ((s >= 0) & (s <= 1)).all()
        assert m["auc"] > 0.8
    elif task == "multiclass":
        assert set(np.unique(s)) <= {0.0, 1.0, 2.0}
        assert m["accuracy"] > 0.7
    elif task == "anomaly":
        assert ((s >= 0) & (s <= 1)).all()
        assert m["flag_rate"] < 0.2
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
    assert PRIMARY_METRIC == {"classification": "auc", "multiclass": "accuracy", "regression": "r2",
                              "anomaly": "flag_rate"}


def test_an_anomaly_model_does_not_score_or_learn_a_part_with_no_measurement():
    """An all-NaN row (every result missing or a sentinel) scored near 1, above any threshold,
    and the training window's empty rows raised the threshold for every other part."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 3))
    with_empty = np.vstack([X[:500], np.full((100, 3), np.nan), X[500:]])
    model = build_estimator("anomaly", "half_space_trees", contamination=0.02).fit(with_empty)
    clean = build_estimator("anomaly", "half_space_trees", contamination=0.02).fit(X)
    assert model.threshold == clean.threshold
    scores = model.score_samples(np.array([[np.nan] * 3, [np.nan, 0.0, np.nan], [9.0, 9.0, 9.0]]))
    assert math.isnan(scores[0]) and not math.isnan(scores[1]) and scores[2] > model.threshold
    # the holdout's flag rate is the share of the scored parts flagged
    holdout = np.vstack([X[:200], np.full((200, 3), np.nan)])
    flagged = evaluate("anomaly", model, X[:200], None)["flag_rate"]
    assert flagged > 0 and evaluate("anomaly", model, holdout, None)["flag_rate"] == flagged


def test_an_anomaly_model_scores_a_partly_measured_part_on_what_it_measured():
    """river's trees send a missing test down whichever branch holds more of the current
    window: a typical part with 10 % of its 50 tests missing was flagged one time in five at a
    1 % contamination. Missing tests are taken at the training window's medians."""
    rng = np.random.default_rng(0)
    model = build_estimator("anomaly", "half_space_trees", contamination=0.01).fit(rng.normal(size=(5000, 50)))
    typical = rng.normal(size=(2000, 50))
    typical[rng.random(typical.shape) < 0.1] = np.nan
    assert np.mean(model.score_samples(typical) > model.threshold) < 0.02
    outlier = np.zeros((2, 50))
    outlier[:, :25] = 8.0  # far out on half its tests
    outlier[0, 45:] = model.medians[45:]
    outlier[1, 45:] = np.nan  # the same part with five tests missing
    scores = model.score_samples(outlier)
    assert scores[1] > model.threshold and scores[1] == scores[0]


def test_an_anomaly_model_of_fewer_parts_than_its_window_still_scores():
    """The trees score 0 until their first window (50 parts) is full: a model of 40 parts
    scored every part 0, flagged none (a flag rate of 0 %: promoted) and missed a part 8 sd out."""
    rng = np.random.default_rng(0)
    model = build_estimator("anomaly", "half_space_trees", contamination=0.02).fit(rng.normal(size=(40, 3)))
    assert model.threshold > 0 and model.score_samples(np.array([[8.0, 8.0, 8.0]]))[0] > model.threshold


def test_an_anomaly_model_leaves_out_a_test_its_window_never_measured():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 3))
    X[:, 1] = np.nan
    model = build_estimator("anomaly", "half_space_trees", contamination=0.02).fit(X)
    assert np.isnan(model.medians[1]) and not np.isnan(model.medians[[0, 2]]).any()
    assert not math.isnan(model.score_samples(np.array([[0.0, 5.0, 0.0]]))[0])


def test_an_anomaly_model_registered_before_the_medians_still_scores():
    import pickle
    model = build_estimator("anomaly", "half_space_trees").fit(np.random.default_rng(2).normal(size=(1000, 3)))
    del model.medians  # as pickled by the version before
    old = pickle.loads(pickle.dumps(model))
    assert old.medians is None and old.score_samples(np.array([[0.0, np.nan, 0.0]])).shape == (1,)
