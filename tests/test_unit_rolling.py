"""Unit tests for stream_ct.rolling.RollingMetric: window trimming, NaN labels, min_labels, regression."""

from __future__ import annotations

import numpy as np
import pytest

from stream_ct.rolling import RollingMetric

NAN = np.nan


def test_window_trims_to_size_keeping_pairs_aligned():
    m = RollingMetric("classification", size=5, min_labels=1)
    m.add(np.array([0.1, 0.2, 0.3]), np.array([0.0, 1.0, 0.0]))
    m.add(np.array([0.4, 0.5, 0.6, 0.7, 0.8]), np.array([1.0, 0.0, 1.0, 0.0, 1.0]))
    assert m.seen == 8
    np.testing.assert_array_equal(m.scores, [0.4, 0.5, 0.6, 0.7, 0.8])
    np.testing.assert_array_equal(m.labels, [1.0, 0.0, 1.0, 0.0, 1.0])
    # in the window: positives 0.4, 0.6, 0.8 vs negatives 0.5, 0.7 -> 3 of 6 pairs ranked right
    assert m.value()["auc"] == pytest.approx(0.5)


def test_one_big_batch_is_trimmed_too():
    m = RollingMetric("classification", size=4, min_labels=1)
    m.add(np.arange(10) / 10, (np.arange(10) % 2).astype(float))
    assert len(m.scores) == len(m.labels) == 4 and m.seen == 10
    np.testing.assert_array_equal(m.scores, [0.6, 0.7, 0.8, 0.9])


def test_old_errors_leave_the_window():
    m = RollingMetric("classification", size=4, min_labels=4)
    m.add(np.array([0.9, 0.1, 0.9, 0.1]), np.array([0.0, 1.0, 0.0, 1.0]))  # all wrong
    assert m.value() == {"auc": 0.0, "accuracy": 0.0, "f1": 0.0}
    m.add(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1.0, 0.0, 1.0, 0.0]))  # all right
    assert m.value() == {"auc": 1.0, "accuracy": 1.0, "f1": 1.0}


def test_nan_labels_are_ignored():
    m = RollingMetric("classification", size=100, min_labels=1)
    m.add(np.array([0.9, 0.8, 0.1]), np.array([NAN, 1.0, NAN]))
    assert m.seen == 1
    np.testing.assert_array_equal(m.scores, [0.8])
    m.add(np.array([0.5, 0.5]), np.array([NAN, NAN]))  # nothing labeled: no change
    assert m.seen == 1 and len(m.scores) == 1


def test_min_labels():
    m = RollingMetric("classification", size=100, min_labels=4)
    m.add(np.array([0.9, 0.8, 0.1]), np.array([1.0, 1.0, 0.0]))
    assert m.value() is None
    m.add(np.array([0.3, 0.7]), np.array([NAN, NAN]))
    assert m.value() is None
    m.add(np.array([0.2]), np.array([0.0]))
    assert m.value() == {"auc": 1.0, "accuracy": 1.0, "f1": 1.0}


def test_min_labels_larger_than_size_never_reports():
    m = RollingMetric("classification", size=3, min_labels=5)
    m.add(np.array([0.9, 0.1] * 5), np.array([1.0, 0.0] * 5))
    assert m.seen == 10 and m.value() is None


def test_single_class_window_has_nan_auc():
    m = RollingMetric("classification", size=10, min_labels=2)
    m.add(np.array([0.9, 0.2]), np.array([1.0, 1.0]))
    v = m.value()
    assert np.isnan(v["auc"]) and v["accuracy"] == 0.5


def test_regression_metrics():
    m = RollingMetric("regression", size=4, min_labels=2)
    m.add(np.array([100.0, 100.0]), np.array([1.0, 2.0]))  # trimmed away below
    m.add(np.array([1.5, 1.5, 4.0, 6.0]), np.array([1.0, 2.0, 4.0, 5.0]))
    v = m.value()
    # errors 0.5, -0.5, 0, 1 -> MAE 0.5; MAPE mean(0.5, 0.25, 0, 0.2) = 0.2375
    assert v["mae"] == pytest.approx(0.5)
    assert v["mape"] == pytest.approx(0.2375)
    # SS_res = 0.25 + 0.25 + 0 + 1 = 1.5; mean 3, SS_tot = 4 + 1 + 1 + 4 = 10 -> R2 0.85
    assert v["r2"] == pytest.approx(0.85)


def test_regression_nan_labels_ignored():
    m = RollingMetric("regression", size=10, min_labels=2)
    m.add(np.array([1.0, 99.0, 3.0]), np.array([1.0, NAN, 3.0]))
    assert m.value() == {"r2": 1.0, "mae": 0.0, "mape": 0.0}
