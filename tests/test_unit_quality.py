"""Unit tests for stream_ct.quality.check_window (every check's pass and fail, with detail texts),
stream_ct.features.count_sentinels and the [quality] config section."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from stream_ct.config import ConfigError, ConsumerConfig, QualitySection
from stream_ct.features import count_sentinels
from stream_ct.gates import GateResult
from stream_ct.quality import check_window

RNG = np.random.default_rng(5)
NAMES = ["a", "b", "c"]
X_GOOD = RNG.normal(size=(200, 3))
Y_GOOD = (np.arange(200) % 4 != 0).astype(float)  # 150 pass, 50 fail
LIMITS = dict(min_rows=100, min_minority=20, max_missing=0.2, max_sentinel=0.05, max_constant=0.5)
CHECKS = ["quality:rows", "quality:schema", "quality:missing", "quality:sentinels", "quality:constant",
          "quality:labels"]


def check(X=X_GOOD, y=Y_GOOD, names=NAMES, task="classification", sentinels=0, values=600, **limits):
    return {r.name: r for r in check_window(task, X, y, names, sentinels=sentinels, values=values,
                                            **dict(LIMITS, **limits))}


def test_good_window_passes_every_check_with_details():
    results = check_window("classification", X_GOOD, Y_GOOD, NAMES, sentinels=0, values=600, **LIMITS)
    assert [r.name for r in results] == CHECKS
    assert all(r.passed is True for r in results)
    by = {r.name: r for r in results}
    assert by["quality:rows"] == GateResult("quality:rows", True, 200, 100, "200 labeled rows >= minimum 100")
    assert by["quality:schema"] == GateResult("quality:schema", True, 3, 1, "3 features")
    assert by["quality:missing"].value == 0.0
    assert by["quality:sentinels"] == GateResult(
        "quality:sentinels", True, 0.0, 0.05, "0 sentinel results (inf or |v| >= 1e30, e.g. 9.9e37) = 0.00%; limit 5%")
    assert by["quality:constant"] == GateResult(
        "quality:constant", True, 0.0, 0.5, "0 of 3 features constant or empty; limit 50%")
    assert by["quality:labels"] == GateResult(
        "quality:labels", True, 50, 20, "minority class has 50 rows; minimum 20")


# --- rows and schema ----------------------------------------------------------------------------

def test_rows_fail():
    r = check(min_rows=500)["quality:rows"]
    assert r == GateResult("quality:rows", False, 200, 500, "200 labeled rows < minimum 500")


def test_rows_at_minimum_pass():
    assert check(min_rows=200)["quality:rows"].passed is True


def test_zero_rows_stops_after_rows_naming_the_target():
    results = check_window("classification", np.empty((0, 0)), np.empty(0), [], sentinels=0, values=0,
                           target="passed", **LIMITS)
    assert results == [GateResult("quality:rows", False, 0, 100,
                                  "0 labeled rows < minimum 100 (no record in the window has a usable passed)")]


def test_schema_with_zero_features_fails():
    results = check_window("classification", np.empty((200, 0)), Y_GOOD, [], sentinels=0, values=0, **LIMITS)
    assert [r.name for r in results] == ["quality:rows", "quality:schema"]
    assert results[1] == GateResult("quality:schema", False, 0, 1, "no test matched the feature patterns with a measured result")


# --- missing -------------------------------------------------------------------------------------

def X_missing():
    X = X_GOOD.copy()
    X[:120, 1] = np.nan  # 120 of 600 values = 20.0%, all in b
    return X


def test_missing_fraction_fail_names_the_worst_feature():
    r = check(X=X_missing(), max_missing=0.15)["quality:missing"]
    assert (r.name, r.passed, r.threshold) == ("quality:missing", False, 0.15)
    assert r.value == pytest.approx(0.2)
    assert r.detail == "20.0% of values missing (worst: b); limit 15%"


def test_missing_fraction_at_limit_passes():
    r = check(X=X_missing(), max_missing=0.2)["quality:missing"]
    assert r.passed is True and r.detail == "20.0% of values missing (worst: b); limit 20%"


# --- sentinels -----------------------------------------------------------------------------------

def test_sentinel_fraction_fail_and_pass():
    r = check(sentinels=33, values=600)["quality:sentinels"]
    assert (r.passed, r.value, r.threshold) == (False, 0.055, 0.05)
    assert r.detail == "33 sentinel results (inf or |v| >= 1e30, e.g. 9.9e37) = 5.50%; limit 5%"
    r = check(sentinels=30, values=600)["quality:sentinels"]
    assert (r.passed, r.value) == (True, 0.05)
    assert r.detail == "30 sentinel results (inf or |v| >= 1e30, e.g. 9.9e37) = 5.00%; limit 5%"


def test_sentinels_are_named_as_sentinels_not_nan():
    """count_sentinels leaves NaN out (a binary record's null is no result): the message called
    the 9.9e37 results it counts NaN."""
    records = [{"tests": {"a": 9.9e37, "b": float("nan"), "c": 1.0}} for _ in range(10)]
    records += [{"tests": {"a": 1.0, "b": 2.0, "c": float(i)}} for i in range(90)]
    sentinels, values = count_sentinels(records, NAMES)
    assert (sentinels, values) == (10, 290)
    detail = check(sentinels=sentinels, values=values)["quality:sentinels"].detail
    assert detail == "10 sentinel results (inf or |v| >= 1e30, e.g. 9.9e37) = 3.45%; limit 5%"
    assert "NaN" not in detail


def test_sentinel_share_with_no_values_is_zero():
    assert check(sentinels=0, values=0)["quality:sentinels"].value == 0.0


# --- constant columns ----------------------------------------------------------------------------

def X_constant():
    X = X_GOOD.copy()
    X[:, 1] = 5.0  # constant
    X[:, 2] = np.nan  # empty
    return X


def test_constant_columns_fail_lists_them():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: all-NaN slice
        r = check(X=X_constant(), max_missing=1.0)["quality:constant"]
    assert (r.name, r.passed, r.threshold) == ("quality:constant", False, 0.5)
    assert r.value == pytest.approx(2 / 3)
    assert r.detail == "2 of 3 features constant or empty (b, c); limit 50%"


def test_constant_columns_within_limit_pass():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = check(X=X_constant(), max_missing=1.0, max_constant=0.7)["quality:constant"]
    assert r.passed is True and r.detail == "2 of 3 features constant or empty (b, c); limit 70%"


def test_constant_columns_named_at_most_five():
    X = np.ones((150, 8))
    X[:, 7] = np.arange(150)
    names = [f"t{j}" for j in range(8)]
    r = check(X=X, y=Y_GOOD[:150], names=names)["quality:constant"]
    assert r.passed is False and r.value == 7 / 8
    assert r.detail == "7 of 8 features constant or empty (t0, t1, t2, t3, t4); limit 50%"


def test_column_with_values_and_nan_is_not_constant_if_values_differ():
    X = X_GOOD.copy()
    X[:199, 0] = np.nan
    X[199, 0] = 1.0  # one value: constant
    X[:100, 1] = np.nan  # half missing, rest varies: not constant
    r = check(X=X, max_missing=1.0)["quality:constant"]
    assert r.detail == "1 of 3 features constant or empty (a); limit 50%"


# --- labels --------------------------------------------------------------------------------------

def test_label_balance_fail_classification():
    y = np.ones(200)
    y[:3] = 0.0
    assert check(y=y)["quality:labels"] == GateResult(
        "quality:labels", False, 3, 20, "minority class has 3 rows; minimum 20")


def test_label_balance_single_class_is_zero_minority():
    assert check(y=np.zeros(200))["quality:labels"] == GateResult(
        "quality:labels", False, 0, 20, "minority class has 0 rows; minimum 20")


def test_a_training_split_of_one_class_fails_the_labels_check():
    """Every failing part in the newest 25 % (the holdout): the window has its minority but the
    training split has none, and a classifier cannot be fitted on one class."""
    y = np.ones(200)
    y[170:] = 0.0  # 30 failing parts, all after row 150
    r = check(y=y, train_rows=150, target="passed")["quality:labels"]
    assert r == GateResult("quality:labels", False, 30, 20,
                           "training window has one class (all 150 oldest rows passed = 1; every other class "
                           "falls in the holdout, the newest 50); need both")


def test_a_multiclass_training_split_of_one_class_fails_the_labels_check():
    y = np.full(200, 1.0)
    y[160:] = 3.0
    r = check(y=y, task="multiclass", train_rows=150, target="soft_bin")["quality:labels"]
    assert r.passed is False and r.detail.startswith("training window has one class (all 150 oldest rows soft_bin = 1;")
    assert r.detail.endswith("need two or more")


def test_a_training_split_with_both_classes_passes_the_labels_check():
    y = np.ones(200)
    y[140:180] = 0.0  # 10 of the 40 failing parts are in the training split, 30 in the holdout
    r = check(y=y, train_rows=150, target="passed")["quality:labels"]
    assert r == GateResult("quality:labels", True, 40, 20, "minority class has 40 rows; minimum 20")


def test_a_holdout_of_one_class_fails_the_labels_check():
    """Every failing part in the oldest 75 %: the candidate fits, but its AUC on the holdout is
    NaN (it was rejected as 'auc nan < floor')."""
    y = np.ones(200)
    y[:30] = 0.0
    r = check(y=y, train_rows=150, target="passed")["quality:labels"]
    assert r == GateResult("quality:labels", False, 30, 20,
                           "holdout has one class (all 50 newest rows passed = 1; every other class falls in "
                           "the training window, the oldest 150); the AUC gate needs both")


def test_regression_constant_target_fails():
    r = check(y=np.full(200, 12.5), task="regression")["quality:labels"]
    assert r == GateResult("quality:labels", False, 0.0, 0.0, "target is constant")


def test_an_outlier_window_counts_rows_not_labeled_rows():
    """Outlier models learn without labels: a short window said '999 labeled rows < minimum 1000'."""
    r = check(y=np.full(200, np.nan), task="anomaly", min_rows=500)["quality:rows"]
    assert r == GateResult("quality:rows", False, 200, 500, "200 rows < minimum 500")


def test_a_regression_holdout_of_one_value_fails_the_labels_check():
    """The newest quarter all at one test time: R² there is 0 for any error short of none, and
    the candidate was rejected as 'r2 0.0000 < floor 0.3000'."""
    y = np.concatenate([np.arange(150.0), np.full(50, 820.0)])
    r = check(y=y, task="regression", train_rows=150, target="test_time_ms")["quality:labels"]
    assert (r.passed, r.detail) == (False, "holdout's test_time_ms is constant (all 50 newest rows = 820); the R² "
                                           "gate needs it to vary (R² is 0 there for any error short of none)")
    assert check(y=np.arange(200.0), task="regression", train_rows=150)["quality:labels"].passed


def test_regression_varying_target_passes():
    y = np.arange(200, dtype=float)
    r = check(y=y, task="regression")["quality:labels"]
    assert (r.passed, r.threshold, r.detail) == (True, 0.0, "target varies")
    assert r.value == pytest.approx(float(np.std(y)))


def test_every_verdict_is_a_real_bool():
    for task, y in (("classification", Y_GOOD), ("regression", np.arange(200.0))):
        for r in check_window(task, X_GOOD, y, NAMES, sentinels=50, values=600, **LIMITS):
            assert type(r.passed) is bool, r


# --- count_sentinels -----------------------------------------------------------------------------

def test_count_sentinels():
    records = [
        {"tests": {"a": 1.0, "b": 9.9e37, "c": 1e30}},  # b: huge; c (unselected) ignored
        {"tests": {"a": float("nan"), "b": None}},  # None (missing) is not a value, nor NaN (a binary null)
        {"tests": {"a": float("inf"), "b": -1e30}},  # exactly 1e30 in magnitude counts
        {"tests": {"a": 9.99e29, "b": float("-inf")}},
        {"tests": {}},
    ]
    assert count_sentinels(records, ["a", "b"]) == (4, 6)
    assert count_sentinels(records, ["c"]) == (1, 1)
    assert count_sentinels(records, ["zzz"]) == (0, 0)
    assert count_sentinels([], ["a"]) == (0, 0)


# --- [quality] config section --------------------------------------------------------------------

def test_quality_section_defaults_and_override():
    base = {"consumer": {"name": "y", "input_topic": "parts"}}
    assert ConsumerConfig.from_dict(base).quality == QualitySection(
        max_missing_fraction=0.2, max_sentinel_fraction=0.05, max_constant_fraction=0.5)
    cfg = ConsumerConfig.from_dict(dict(base, quality={"max_missing_fraction": 0.5, "max_constant_fraction": 1}))
    assert cfg.quality.max_missing_fraction == 0.5 and cfg.quality.max_constant_fraction == 1.0
    with pytest.raises(ConfigError) as exc:
        ConsumerConfig.from_dict(dict(base, quality={"max_missing": 0.5}))
    assert str(exc.value) == ("<dict>: unknown key [quality] max_missing; known keys: max_missing_fraction, "
                              "max_sentinel_fraction, max_constant_fraction")


def test_pass_fail_labels_other_than_0_and_1_fail_the_labels_check_naming_them():
    """A target of hard bins 1 (good) and 5 (bad) with task classification trained a perfect
    model that the gates measured as AUC 0 (label 1 is the positive class, the probability the
    larger label's): rejected as a bad model."""
    r = check_window("classification", X_GOOD, np.where(Y_GOOD == 1, 1.0, 5.0), NAMES, sentinels=0, values=600,
                     target="hard_bin", **LIMITS)[-1]
    assert r.name == "quality:labels" and r.passed is False and r.value == 50
    assert r.detail == ('pass/fail labels are 0 (fail) and 1 (pass), but 50 rows have hard_bin = 5; '
                        'learn bins with task = "multiclass"')
