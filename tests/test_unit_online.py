"""Unit tests for stream_ct.online.OnlineModel: prequential predict-then-learn."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from stream_ct.features import Measurements, measurement_rows
from stream_ct.online import OnlineModel

RNG = np.random.default_rng(5)
ROWS = [{"a": float(a), "b": float(b)} for a, b in RNG.normal(size=(60, 2))]
LABELS_CLS = [1.0 if r["a"] > 0 else 0.0 for r in ROWS]
LABELS_REG = [2.0 * r["a"] + 1.0 for r in ROWS]


@pytest.mark.parametrize("task, labels", [("classification", LABELS_CLS), ("regression", LABELS_REG)])
def test_score_of_a_row_does_not_depend_on_its_own_label(task, labels):
    a, b = OnlineModel(task), OnlineModel(task)
    other = list(labels)
    other[-1] = (1.0 - labels[-1]) if task == "classification" else labels[-1] + 100.0
    sa = a.predict_learn(ROWS, labels)
    sb = b.predict_learn(ROWS, other)
    np.testing.assert_array_equal(sa, sb)
    # but the label is learned: the next prediction differs
    assert a.predict_learn([ROWS[0]], [math.nan])[0] != b.predict_learn([ROWS[0]], [math.nan])[0]


def test_batch_split_does_not_change_scores():
    a, b = OnlineModel("classification"), OnlineModel("classification")
    whole = a.predict_learn(ROWS, LABELS_CLS)
    parts = np.concatenate([b.predict_learn(ROWS[:7], LABELS_CLS[:7]), b.predict_learn(ROWS[7:], LABELS_CLS[7:])])
    np.testing.assert_allclose(whole, parts, rtol=1e-12, atol=1e-15)  # chunks differ: rounding only


def test_untrained_scores():
    assert OnlineModel("classification").predict_learn([ROWS[0]], [1.0])[0] == 0.5
    assert OnlineModel("regression").predict_learn([ROWS[0]], [3.0])[0] == 0.0


def test_only_labeled_rows_are_learned():
    labels = [math.nan if i % 3 else y for i, y in enumerate(LABELS_CLS)]
    m = OnlineModel("classification")
    m.predict_learn(ROWS, labels)
    assert m.n_learned == sum(1 for y in labels if not math.isnan(y)) == 20
    ref = OnlineModel("classification")
    ref.predict_learn([r for r, y in zip(ROWS, labels) if not math.isnan(y)],
                      [y for y in labels if not math.isnan(y)])
    probe = [{"a": 1.0, "b": -0.5}, {"a": -2.0, "b": 0.3}]
    np.testing.assert_array_equal(m.predict_learn(probe, [math.nan] * 2), ref.predict_learn(probe, [math.nan] * 2))
    assert m.n_learned == 20


def test_unlabeled_rows_do_not_change_the_model():
    m = OnlineModel("classification")
    first = m.predict_learn(ROWS[:5], [math.nan] * 5)
    assert (first == 0.5).all() and m.n_learned == 0


def test_classification_learns_direction():
    m = OnlineModel("classification", learning_rate=0.1)
    m.predict_learn(ROWS * 5, LABELS_CLS * 5)
    s = m.predict_learn([{"a": 2.0, "b": 0.0}, {"a": -2.0, "b": 0.0}], [math.nan, math.nan])
    assert s[0] > 0.8 and s[1] < 0.2
    assert ((s >= 0) & (s <= 1)).all()


def test_regression_learns():
    m = OnlineModel("regression", learning_rate=0.05)
    scores = m.predict_learn(ROWS * 10, LABELS_REG * 10)
    err_first = np.mean(np.abs(scores[:60] - LABELS_REG))
    err_last = np.mean(np.abs(scores[-60:] - LABELS_REG))
    assert err_last < 0.2 * err_first
    assert m.n_learned == 600


def test_empty_batch():
    m = OnlineModel("regression")
    assert m.predict_learn([], []).shape == (0,)
    assert m.n_learned == 0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        OnlineModel("classification").predict_learn(ROWS[:3], [1.0])


def _mixed_stream(n=700, seed=11, complete=False):
    """Rows with absent features, a feature that appears later, a constant one, unlabeled rows
    (``complete``: every row has the same features)."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        a, b, c = rng.normal(size=3)
        row = {"a": 50.0 + a, "const": 3.0}
        if i % 5 or complete:
            row["b"] = 10.0 * b
        if i > 300 or complete:
            row["late"] = c
        rows.append(row)
        labels.append(math.nan if i % 7 == 3 else a + 0.5 * b + rng.normal(0, 0.5))
    return rows, labels


@pytest.mark.parametrize("complete", [False, True])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_numpy_engine_matches_river(task, complete):
    rows, labels = _mixed_stream(complete=complete)
    if task == "classification":
        labels = [y if math.isnan(y) else float(y > 0) for y in labels]
    fast, river = OnlineModel(task), OnlineModel(task, engine="river")
    assert fast.fast is not None and river.fast is None
    for lo, hi in ((0, 1), (1, 250), (250, 333), (333, 700)):  # batches of several sizes
        np.testing.assert_allclose(fast.predict_learn(rows[lo:hi], labels[lo:hi]),
                                   river.predict_learn(rows[lo:hi], labels[lo:hi]), rtol=1e-9, atol=1e-12)
    fast.learn(rows[0], labels[1]), river.learn(rows[0], labels[1])  # a late label
    np.testing.assert_allclose(fast.predict_learn(rows[:50], [math.nan] * 50),
                               river.predict_learn(rows[:50], [math.nan] * 50), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_batch_of_results_scores_as_its_measurement_rows(task):
    """Serve hands the model a batch's ``Measurements`` (non-measurements are NaN there): the
    numpy engine must score as river does on the rows without them."""
    rows, labels = _mixed_stream(complete=False)
    if task == "classification":
        labels = [y if math.isnan(y) else float(y > 0) for y in labels]
    records = []
    for i, row in enumerate(rows):
        tests = dict(row)
        if i % 11 == 0:
            tests["a"] = [None, math.nan, 9.9e37, -math.inf][i % 4]  # not a measurement
        if i % 13 == 0:
            tests["only_sentinels"] = 9.9e37  # a key that never carries a measurement
        records.append({"tests": tests})
    fast, river = OnlineModel(task), OnlineModel(task, engine="river")
    for lo, hi in ((0, 1), (1, 250), (250, 700)):
        batch = Measurements(records[lo:hi])
        np.testing.assert_allclose(fast.predict_learn(batch, labels[lo:hi]),
                                   river.predict_learn(measurement_rows(records[lo:hi]), labels[lo:hi]),
                                   rtol=1e-9, atol=1e-12)
    assert fast.n_learned == river.n_learned
    probe = Measurements(records[:40])  # river's engine takes the batch too (its rows)
    np.testing.assert_allclose(fast.predict_learn(probe, [math.nan] * 40),
                               river.predict_learn(probe, [math.nan] * 40), rtol=1e-9, atol=1e-12)


def test_the_online_outlier_model_takes_a_missing_test_at_its_running_median():
    """Without it river's trees sent a missing test down whichever branch held more of the
    current window: typical parts with half their 50 tests missing were flagged three times
    as often as complete ones."""
    rng = np.random.default_rng(0)
    model = OnlineModel("anomaly")

    def parts(n, missing):
        return [{f"t{j}": v for j, v in enumerate(row) if rng.random() >= missing}
                for row in rng.normal(size=(n, 50)).tolist()]

    model.predict_learn(parts(3000, 0.0), [math.nan] * 3000)
    complete = model.predict_learn(parts(2000, 0.0), [math.nan] * 2000)
    half = model.predict_learn(parts(2000, 0.5), [math.nan] * 2000)
    assert np.mean(half > 0.9) <= np.mean(complete > 0.9)
    empty = model.predict_learn([{}], [math.nan])
    assert math.isnan(empty[0])


def _parts(rng, n, n_tests=10):
    return [{f"t{j}": v for j, v in enumerate(row)} for row in rng.normal(size=(n, n_tests)).tolist()]


def test_a_test_missing_from_the_first_part_still_flags_its_outliers():
    """river's trees split on the tests of the first part they learn: a test that part lacked
    was never split on, so a part out only on it scored exactly as the same part without."""
    rng = np.random.default_rng(1)
    parts = _parts(rng, 1000)
    del parts[0]["t7"]
    model = OnlineModel("anomaly")
    model.predict_learn(parts, [math.nan] * len(parts))

    def score(part):
        return copy.deepcopy(model).predict_learn([part], [math.nan])[0]

    probes = _parts(rng, 20)
    rise = np.array([score({**part, "t7": 8.0}) - score(part) for part in probes])
    assert np.mean(rise > 0) >= 0.75  # a part out on t7 ranks above its normal twin


def test_rebuilding_the_trees_for_a_new_test_does_not_depend_on_batches():
    rng = np.random.default_rng(2)
    parts = _parts(rng, 600)
    for part in parts[:40]:
        del part["t7"]
    whole = OnlineModel("anomaly").predict_learn(parts, [math.nan] * 600)
    split = OnlineModel("anomaly")
    scores = np.concatenate([split.predict_learn(parts[lo:lo + 25], [math.nan] * 25) for lo in range(0, 600, 25)])
    np.testing.assert_array_equal(whole, scores)
    assert split.tree_tests == 10 and (whole[:250] == 0).all() and (whole[250:] > 0).all()


def test_a_test_first_seen_long_after_the_start_is_split_on_a_window_later():
    """A test first seen after the trees' first window was never split on: a part out only on
    it scored as its normal twin until a champion served."""
    rng = np.random.default_rng(3)
    parts = _parts(rng, 1800)
    for part in parts[:1000]:
        del part["t7"]
    model = OnlineModel("anomaly")
    scores = model.predict_learn(parts, [math.nan] * len(parts))
    assert (scores[250:] > 0).all()  # the old trees go on scoring while the new ones fill a window
    assert model.tree_tests == 10 and model.new_test_rows == []

    def score(part):
        return copy.deepcopy(model).predict_learn([part], [math.nan])[0]

    probes = _parts(rng, 20)
    rise = np.array([score({**part, "t7": 8.0}) - score(part) for part in probes])
    assert np.mean(rise > 0) >= 0.75  # a part out on t7 ranks above its normal twin
