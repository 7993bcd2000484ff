"""Self-starting CUSUM on whole lots' means (stream_ct/drift/lot_means.py), no broker."""

import copy

import numpy as np
import pytest

from stream_ct.drift.calibration import siegmund_arl
from stream_ct.drift.lot_means import LotAccumulator, LotMeanChart, lot_runs, reference_lots


def _lots(n_lots, size, d, rng, lot_sd=0.3, start=0):
    """Records of ``n_lots`` lots of ``size`` parts (two wafers each), lot offsets N(0, lot_sd)."""
    offsets = rng.normal(0, lot_sd, (n_lots, d))
    X = np.repeat(offsets, size, axis=0) + rng.normal(size=(n_lots * size, d))
    lot = np.repeat(np.arange(start, start + n_lots), size)
    wafer = np.tile(np.repeat([1, 2], size // 2), n_lots)
    return X, np.array([f"L{a}/{b}" for a, b in zip(lot, wafer)])


def test_lot_runs_merge_wafers_of_one_lot_and_need_lot_ids():
    starts, lots = lot_runs(np.array(["A/1", "A/1", "A/2", "B/1", "B/1", "A/3"]))
    assert starts.tolist() == [0, 3, 5] and lots.tolist() == ["A", "B", "A"]
    assert lot_runs(np.array(["w1", "w2"])) is None


def test_accumulator_across_batches_equals_direct_lot_means_with_missing_values():
    rng = np.random.default_rng(0)
    X, groups = _lots(6, 50, 3, rng)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[100:150, 2] = np.nan  # lot 2 has no value of feature 2
    acc, means, sizes, ends = LotAccumulator(3), [], [], []
    for a in range(0, len(X), 37):  # batches that cut lots anywhere
        m, s, e = acc.update(X[a:a + 37], groups[a:a + 37], np.arange(a, min(a + 37, len(X))))
        means.append(m), sizes.append(s), ends.append(e)
    means, sizes, ends = np.vstack(means), np.concatenate(sizes), np.concatenate(ends)
    expected = np.array([np.nanmean(X[i * 50:(i + 1) * 50], axis=0) if i != 2 else
                         np.r_[np.nanmean(X[100:150, :2], axis=0), np.nan] for i in range(5)])
    np.testing.assert_allclose(means, expected, equal_nan=True)
    assert sizes.tolist() == [50] * 5 and ends.tolist() == [50, 100, 150, 200, 250]  # lot 5 still open


def test_reference_lots_keep_whole_lots_only():
    rng = np.random.default_rng(1)
    X, groups = _lots(12, 40, 2, rng)
    means, size = reference_lots(X[25:], groups[25:])  # the first lot cut to 15 records, the last open
    assert size == 40 and len(means) == 10
    assert reference_lots(X[:200], groups[:200]) is None  # 4 lots: too few for the chart
    mixed = groups.copy()
    mixed[-1] = "w9"
    assert reference_lots(X, mixed) is None  # not every id names a lot


def test_false_alarm_rate_matches_the_stated_arl():
    """Per chart ARL of 200 lots (k = 0.5, Siegmund), 8 charts, 20,000 no-drift lots from a
    10-lot reference: about 800 alarms expected; Siegmund's approximation and Poisson noise
    stay within 20 %."""
    rng = np.random.default_rng(3)
    d, n, arl = 4, 20_000, 200
    chart = LotMeanChart(rng.normal(0, 0.3, (10, d)), lot_records=1, k=0.5, arl0=arl / (2 * d), share=1.0, lag=0)
    assert siegmund_arl(0.5, chart.thresholds[0][0]) == pytest.approx(arl, rel=1e-6)
    means = rng.normal(0, 0.3, (n, d))
    groups = np.array([f"L{i}/1" for i in range(n + 1)])
    alarms = chart.update(np.vstack([means, np.zeros((1, d))]), groups, np.arange(n + 1))
    expected = n * 2 * d / arl
    assert 0.8 * expected <= len(alarms) <= 1.2 * expected


def test_a_step_at_a_lot_boundary_is_caught_after_a_few_lots_and_not_before():
    """A step of about 3 lot sds from a lot's first record, at ARL0 = 100,000 records on lots
    of 200 (100,000 lots per chart; lots joining 20 late: threshold 16.9, Siegmund's 9.7).
    Seen 13 lots after it here (9 with lots joining at once)."""
    rng = np.random.default_rng(4)
    d, size = 10, 200
    ref, ref_groups = _lots(20, size, d, rng)
    means, lot_records = reference_lots(ref, ref_groups)
    chart = LotMeanChart(means, lot_records, k=0.5, arl0=100_000, share=0.1)
    X, groups = _lots(40, size, d, rng, start=20)
    X[10 * size:, 3] += 1.0  # about 3 lot sds, from the first record of lot 30
    alarms = chart.update(X, groups, np.arange(len(X)))
    assert alarms and all(a.feature == 3 and a.side == 1 for a in alarms)
    assert 10 * size < alarms[0].position <= 25 * size


def test_state_round_trip_resumes_identically():
    rng = np.random.default_rng(5)
    ref, ref_groups = _lots(12, 100, 3, rng)
    X, groups = _lots(20, 100, 3, rng, start=12)
    X[800:, 0] += 0.8
    whole = LotMeanChart(*reference_lots(ref, ref_groups), k=0.5, arl0=10_000, share=1.0)
    expected = whole.update(X, groups, np.arange(len(X)))
    first = LotMeanChart(*reference_lots(ref, ref_groups), k=0.5, arl0=10_000, share=1.0)
    got = first.update(X[:950], groups[:950], np.arange(950))  # stop inside a lot
    resumed = LotMeanChart(*reference_lots(ref, ref_groups), k=0.5, arl0=10_000, share=1.0)
    resumed.load_state(copy.deepcopy(first.state_dict()))
    got += resumed.update(X[950:], groups[950:], np.arange(950, len(X)))
    assert expected and [(a.position, a.feature, a.side) for a in got] == [
        (a.position, a.feature, a.side) for a in expected]
    np.testing.assert_allclose([a.statistic for a in got], [a.statistic for a in expected], rtol=1e-9)


def _lot_stream(means):
    """One record per lot (``lot_records=1``) and a closing record for the last lot."""
    X = np.vstack([means, np.zeros((1, means.shape[1]))])
    return X, np.array([f"L{i}/1" for i in range(len(X))]), np.arange(len(X))


def _first_alarms(chart, means, side=None):
    """Features that alarmed (on ``side``) and the lot of each one's first alarm."""
    first = {}
    for a in chart.update(*_lot_stream(means)):
        if side is None or a.side == side:
            first.setdefault(a.feature, a.position)
    return first


def test_late_joining_lots_alarm_early_no_more_often_than_the_exact_chart():
    """2,000 independent charts, 20-lot references, per-chart ARL 3,333 lots: in the first
    100 lots the chart whose lots join 20 late (threshold simulated) alarms as often as the
    exact one (116 and 103 here; 2,000 x 0.055 expected), neither more nor much less; at
    the exact chart's threshold it would alarm about twice as often."""
    rng = np.random.default_rng(6)
    d, arl = 2000, 3333.0
    ref, stream = rng.normal(size=(20, d)), rng.normal(size=(100, d))
    exact = LotMeanChart(ref, lot_records=1, k=0.5, arl0=arl / (2 * d), share=1.0, lag=0)
    late = LotMeanChart(ref, lot_records=1, k=0.5, arl0=arl / (2 * d), share=1.0, lag=20)
    assert late.thresholds[0][0] > exact.thresholds[0][0] + 1
    n_exact, n_late = len(_first_alarms(exact, stream)), len(_first_alarms(late, stream))
    assert 70 <= n_exact <= 150  # 2,000 x 0.054
    assert 0.75 * n_exact <= n_late <= 1.25 * n_exact
    at_exact = LotMeanChart(ref, lot_records=1, k=0.5, arl0=arl / (2 * d), share=1.0, lag=20)
    at_exact.banks[0].h[:] = exact.thresholds[0]
    assert len(_first_alarms(at_exact, stream)) >= 1.5 * n_exact


def test_a_step_of_under_one_lot_sd_is_not_absorbed_before_it_is_seen():
    """A step of 0.83 lot sds after a 20-lot reference (a 0.25-part-sd shift on a floor with
    0.3-sd lot offsets), 400 independent charts, ARL 3,333 lots each: joining at once, the
    running mean takes the step in and most charts never cross within 50 lots; joining 20
    lots late, most do."""
    rng = np.random.default_rng(7)
    d, arl = 400, 3333.0
    ref, stream = rng.normal(size=(20, d)), rng.normal(size=(50, d)) + 0.83
    caught = {lag: len(_first_alarms(LotMeanChart(ref, lot_records=1, k=0.5, arl0=arl / (2 * d), share=1.0,
                                                  lag=lag), stream, side=1)) / d for lag in (0, 20)}
    assert caught[0] < 0.45 and caught[20] > 0.55


def test_a_state_saved_before_late_joining_resumes_without_lag():
    rng = np.random.default_rng(8)
    chart = LotMeanChart(rng.normal(size=(10, 2)), lot_records=1, k=0.5, arl0=1000, share=1.0, lag=0)
    old = {k: v for k, v in chart.state_dict().items() if k not in ("lag", "pending", "banks")}
    old["bank"] = chart.banks[0].state_dict()  # one bank, as saved before the slack ladder
    resumed = LotMeanChart(rng.normal(size=(10, 2)), lot_records=1, k=0.5, arl0=1000, share=1.0)
    resumed.load_state(copy.deepcopy(old))
    assert resumed.lag == 0 and resumed.chart.pending.shape == (0, 2)
    np.testing.assert_array_equal(resumed.thresholds, chart.thresholds)


def test_lots_in_pieces_are_not_charted_and_said_once_most_are():
    """An instance that reads one of three partitions a lot's wafers went to sees a third of
    each lot: never half the reference's lot size, so the chart never sees a lot; it says so."""
    rng = np.random.default_rng(6)
    ref, ref_groups = _lots(12, 90, 2, rng)
    chart = LotMeanChart(*reference_lots(ref, ref_groups), k=0.5, arl0=10_000, share=1.0)
    X, groups = _lots(8, 90, 2, rng, start=12)
    third = np.arange(len(X)) % 90 < 30  # 30 of each lot's 90 records
    chart.update(X[third][:120], groups[third][:120], np.arange(120))
    assert chart.pieces_warning() is None  # 3 lots completed: too few to say
    chart.update(X[third][120:], groups[third][120:], np.arange(120, third.sum()))
    assert (chart.completed, chart.whole) == (7, 0)
    warning = chart.pieces_warning()
    assert "lots arrive in pieces (7 of 7 lots" in warning and "--key lot" in warning
    assert chart.pieces_warning() is None  # said once
    whole = LotMeanChart(*reference_lots(ref, ref_groups), k=0.5, arl0=10_000, share=1.0)
    whole.update(X, groups, np.arange(len(X)))
    assert (whole.completed, whole.whole) == (7, 7) and whole.pieces_warning() is None
