"""Unit tests for stream_ct.features: feature selection, matrix and target."""

from __future__ import annotations

import numpy as np

from stream_ct.features import (Measurements, _feature_matrix_reference, die_ids, feature_matrix, measurement_rows,
                               select_features, target_vector, wafer_ids)
from stream_ct.drift.values import lots_of
from stream_ct.record import MISSING_COORD

RECORDS = [
    {"tests": {"1:VDD": 1.0, "2:IDD": 2.0, "10:FREQ": 3.0, "9:temp": 4.0}},
    {"tests": {"1:VDD": 5.0, "300:Leak": None, "2:IDD_hi": 6.0}},
]


def test_select_all_sorted_lexicographically():
    assert select_features(RECORDS) == ["10:FREQ", "1:VDD", "2:IDD", "2:IDD_hi", "300:Leak", "9:temp"]


def test_select_include_globs():
    assert select_features(RECORDS, include=("1*", "9:*")) == ["10:FREQ", "1:VDD", "9:temp"]
    assert select_features(RECORDS, include=("2:IDD",)) == ["2:IDD"]
    assert select_features(RECORDS, include=("?:*",)) == ["1:VDD", "2:IDD", "2:IDD_hi", "9:temp"]


def test_a_pattern_equal_to_an_mpr_pin_key_names_that_pin():
    pins = [{"tests": {"300:IDD[7]": 1.0, "300:IDD[8]": 2.0, "300:IDD7": 3.0}}]
    assert select_features(pins, include=("300:IDD[7]",)) == ["300:IDD7", "300:IDD[7]"]
    assert select_features(pins, exclude=("300:IDD[7]",)) == ["300:IDD[8]"]


def test_select_exclude_globs_win_over_include():
    assert select_features(RECORDS, exclude=("2:*", "*Leak")) == ["10:FREQ", "1:VDD", "9:temp"]
    assert select_features(RECORDS, include=("1:*",), exclude=("1:*",)) == []


def test_select_is_case_sensitive():
    assert select_features(RECORDS, include=("*:TEMP",)) == []
    assert select_features(RECORDS, include=("*:temp",)) == ["9:temp"]


def test_select_no_records():
    assert select_features([]) == []


def test_feature_matrix_column_order_follows_names():
    names = ["2:IDD", "1:VDD", "10:FREQ"]
    X = feature_matrix(RECORDS, names)
    assert X.shape == (2, 3) and X.dtype == np.float64
    np.testing.assert_array_equal(X, np.array([[2.0, 1.0, 3.0], [np.nan, 5.0, np.nan]]))


def test_feature_matrix_missing_null_and_sentinels_are_nan():
    records = [{"tests": {"a": 9.9e37, "b": -9.9e37, "c": float("-inf"), "d": float("inf"),
                          "e": float("nan"), "f": None, "g": 1e30, "h": 9.99e29, "i": -3}}]
    names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "missing"]
    X = feature_matrix(records, names)
    expected = [np.nan] * 7 + [9.99e29, -3.0, np.nan]
    np.testing.assert_array_equal(X, np.array([expected]))


def test_feature_matrix_ignores_unselected_tests():
    X = feature_matrix([{"tests": {"a": 1.0, "zzz": 9.9e37}}], ["a"])
    np.testing.assert_array_equal(X, [[1.0]])


def test_feature_matrix_empty_shapes():
    assert feature_matrix([], ["a", "b"]).shape == (0, 2)
    assert feature_matrix([{"tests": {"a": 1.0}}], []).shape == (1, 0)
    X = feature_matrix([{"tests": {"a": None}}], ["a"])
    assert X.shape == (1, 1) and np.isnan(X[0, 0])


def test_target_vector_missing_labels_are_nan():
    records = [{"passed": True}, {"passed": False}, {}, {"passed": None}, {"passed": 1}, {"passed": 0.25}]
    y = target_vector(records, "passed")
    np.testing.assert_array_equal(y, [1.0, 0.0, np.nan, np.nan, 1.0, 0.25])
    assert y.dtype == np.float64


def test_target_vector_empty():
    assert target_vector([], "passed").shape == (0,)


def test_measurements_equal_a_per_test_reading_of_the_records():
    """Mixed key layouts, nulls, NaN, inf and sentinels, keys the names lack and names no record has."""
    rng = np.random.default_rng(3)
    keys = [f"{i}:t{i}" for i in range(12)]
    specials = [None, float("nan"), float("inf"), 9.9e37, -1e31]
    records = []
    for _ in range(300):
        chosen = [k for k in keys if rng.random() < 0.8]
        rng.shuffle(chosen)
        records.append({"tests": {k: (specials[rng.integers(len(specials))] if rng.random() < 0.1
                                      else float(rng.normal())) for k in chosen}})
    records.append({"tests": {}})
    batch = Measurements(records)
    for names in (keys, keys[::-1][:5], ["absent", keys[3]]):
        np.testing.assert_array_equal(batch.matrix(names), _feature_matrix_reference(records, names))
        np.testing.assert_array_equal(feature_matrix(records, names), _feature_matrix_reference(records, names))
    real = [{k: v for k, v in r["tests"].items() if v is not None and np.isfinite(v) and abs(v) < 1e30}
            for r in records]
    assert batch.missing == sum(len(r["tests"]) for r in records) - sum(map(len, real))
    assert batch.rows() == real and measurement_rows(records) == real


def test_die_ids_treat_the_missing_coordinate_as_absent():
    records = [{"x": MISSING_COORD, "y": 4}, {"x": 4, "y": MISSING_COORD}, {"x": None, "y": 4}, {"y": 4}]
    assert die_ids(records).tolist() == [-1, -1, -1, -1]


def test_die_ids_are_distinct_across_the_whole_16_bit_range():
    edges = (-32767, -32766, -1, 0, 1, 32766, 32767)
    ids = die_ids([{"x": x, "y": y} for x in edges for y in edges])
    assert len(set(ids.tolist())) == len(edges) ** 2 and (ids >= 0).all()


def test_wafers_whose_ids_hold_a_slash_stay_apart_and_keep_their_lot():
    ids = wafer_ids([{"lot_id": "L1/W1", "wafer_id": "7"}, {"lot_id": "L1", "wafer_id": "W1/7"}])
    assert ids[0] != ids[1]
    assert lots_of(ids).tolist() == ["L1%2FW1", "L1"]
