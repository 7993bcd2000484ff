"""Testers that share a partition take turns: the lot-mean charts follow lots by id (and learn
turns the reference did not show), and KS/PSI are calibrated on turns.

Before, a lot ended at the first record of another lot, so two testers taking turns of 16
records gave "lots" of 16 records, consecutive ones sharing a lot offset: on two interleaved
small-lot streams the lot-mean charts raised 187 false alarms in 300,000 no-drift records.
"""

import numpy as np
import pytest

from stream_ct.drift import DriftMonitor
from stream_ct.drift.calibration import interleaved_stream, lot_blocks, turn_order, wafer_blocks
from stream_ct.drift.lot_means import LotAccumulator, lot_gap, turn_taking
from stream_ct.simulate import Simulator


def test_interleaved_lots_are_followed_by_id_and_complete_after_their_turns():
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 1, (8, 2))
    lots = np.repeat(np.arange(8), 100)  # source A: lots 0-3, source B: lots 4-7, 100 records each
    X = offsets[lots] + rng.normal(0, 0.1, (800, 2))
    groups = np.array([f"L{lot}/1" for lot in lots])
    order = turn_order(400, 8, 2)
    X, groups, lots = X[order], groups[order], lots[order]
    gap = lot_gap(groups)
    assert gap == 16  # twice the 8 records of the other tester's turn
    acc, means, sizes, ends = LotAccumulator(2, gap), [], [], []
    for a in range(0, 800, 150):  # batches that cut turns anywhere
        m, s, e = acc.update(X[a:a + 150], groups[a:a + 150], np.arange(a, min(a + 150, 800)))
        means.append(m), sizes.append(s), ends.append(e)
    means, sizes = np.vstack(means), np.concatenate(sizes)
    done = [0, 4, 1, 5, 2, 6]  # in the order they complete; 3 and 7 are still open
    assert sizes.tolist() == [100] * 6
    np.testing.assert_allclose(means, [X[lots == lot].mean(axis=0) for lot in done])
    assert LotAccumulator(2).update(X, groups, np.arange(800))[1].max() == 8  # without the gap: pieces


def test_lot_gap_is_zero_for_whole_lots_and_a_lot_tested_again_later():
    assert lot_gap(np.repeat(["A/1", "A/2", "B/1", "C/1", "A/3"], 50)) == 0  # lot A again at the end
    assert lot_gap(np.repeat(["w1", "w2"], 5)) == 0  # no lot ids


def test_turn_taking_counts_the_testers_and_their_turn():
    lots = np.repeat(np.arange(12), 60)  # testers A (lots 0-3), B (4-7), C (8-11): turns of 5 records
    groups = np.array([f"L{lot}/{i // 30}" for i, lot in enumerate(lots)])
    order = turn_order(240, 5, 3)
    assert turn_taking(groups[order]) == (3, 5)
    assert turn_taking(groups) == (1, 0)


def test_the_null_stream_of_testers_taking_turns_keeps_each_testers_lots_in_order():
    """Lots of 100 rows, two wafers each; each tester's own stream runs through whole lots."""
    groups = np.array([f"L{i // 100}/{i // 50}" for i in range(400)])
    order = turn_order(200, 10, 2)  # lots 0-1 on one tester, 2-3 on the other, in turns of 10
    lots = lot_blocks(wafer_blocks(groups[order], 400), groups[order])
    assert [sorted(order[rows].tolist()) for rows in lots] == [list(range(a, a + 100)) for a in (0, 200, 100, 300)]
    rows, runs = interleaved_stream(lots, 1000, np.random.default_rng(0), 1, 2, 10)
    rows = order[rows]  # as row numbers of the lots laid end to end
    assert len(rows) == len(runs) == 1000
    for tester in (0, 1):  # every other turn: one tester's stream, a lot's rows in order
        own = rows.reshape(-1, 10)[tester::2].ravel()
        jumps = np.flatnonzero(np.diff(own) != 1)
        assert len(jumps) <= 8 and all(own[j + 1] % 100 == 0 for j in jumps)  # a new draw: a lot from its start
    assert (np.diff(rows) != 1).sum() >= 99  # the turns interleave


def _interleaved(n_each: int, seeds, chunk: int = 16, **first):
    """Small-lot streams (5 wafers of 50 dies) of testers taking turns of ``chunk`` records; the
    first source gets ``first`` (a scenario). Returns the columns serve passes and the order."""
    parts = []
    for i, seed in enumerate(seeds):
        sim = Simulator(seed=100, n_tests=20, parts_per_wafer=50, wafers_per_lot=5, stream_seed=seed,
                        **(first if i == 0 else {}))
        b = sim.generate(n_each)
        parts.append((b, np.char.add(f"S{i}-", np.char.add(np.char.add(b.lot_id, "/"), b.wafer_id))))
    order = turn_order(n_each, chunk, len(seeds))
    column = lambda values: np.concatenate(values)[order]  # noqa: E731
    return (column([b.X for b, _ in parts]), column([g for _, g in parts]),
            {s: column([getattr(b, s).astype(str) for b, _ in parts]) for s in ("tester", "site", "fab")},
            column([b.x * 65536 + b.y for b, _ in parts]), order, parts[0][0].feature_names)


def _signals(mon, X, groups, strata, dies):
    out = []
    for a in range(0, len(X), 2000):
        rows = slice(a, a + 2000)
        out += mon.update(X[rows], {k: v[rows] for k, v in strata.items()}, dies[rows], groups[rows])
    return out


@pytest.fixture(scope="module")
def interleaved_monitor():
    X, groups, strata, dies, _, names = _interleaved(10_000, [1, 2])
    return DriftMonitor(X, names, reference_groups=groups, reference_strata=strata, reference_dies=dies, seed=0)


def test_two_testers_taking_turns_raise_no_lot_mean_false_alarms(interleaved_monitor):
    """300,000 no-drift records at ARL0 100,000: 3 false alarms expected in all, of every family."""
    assert interleaved_monitor.cal["lot_means"]["gap"] == 32
    assert any("2 testers take turns of about 16 records" in w for w in interleaved_monitor.warnings)
    X, groups, strata, dies, _, _ = _interleaved(150_000, [3, 4])
    signals = _signals(DriftMonitor.from_state(interleaved_monitor.state_dict()), X, groups, strata, dies)
    assert len(signals) <= 6, [(s.detector, s.position) for s in signals]  # 187 lot-mean alarms before



def test_the_global_charts_variance_rates_reach_over_the_runs_of_testers_taking_turns(interleaved_monitor):
    """Two testers taking turns spread each run of 25 wafers (1,250 records here) over twice
    its records: the variance rates that bound the global charts must reach three runs of
    that span, 7,500 records, not 3,750 (on two 50-test floor testers in turns of 32 the
    short reach let the reference mean's error cross a test's charts: 11 false alarms of
    the global charts in 3,000,000 records instead of 8, where 4.2 are allowed)."""
    starts = interleaved_monitor.cal["curve"]["1"]["starts"]
    assert 3 * 1250 < starts[-1] <= 2 * 3 * 1250

def test_a_step_on_one_tester_taking_turns_is_caught_by_the_lot_mean_charts(interleaved_monitor):
    """1 sd on test 7 of the first tester from one of its lot boundaries (its record 20,000)."""
    X, groups, strata, dies, order, names = _interleaved(
        50_000, [5, 6], scenario="mean-shift", onset=20_000, shift_sigma=1.0, drift_test=7)
    onset = int(np.flatnonzero(order == 20_000)[0])
    signals = _signals(DriftMonitor.from_state(interleaved_monitor.state_dict()), X, groups, strata, dies)
    assert all(s.position >= onset for s in signals), [(s.detector, s.position) for s in signals]
    first = signals[0]
    assert first.detector.startswith("cusum_lot_mean") and first.features[0] == names[7]
    assert first.position - onset <= 3_000  # 1,040 here: about two of its lots


def test_turns_that_begin_after_the_reference_are_learned_from_the_stream():
    """A reference of one tester (gap 0); on the stream two testers take turns of 8 records:
    the first lots come in pieces (not charted), then a lot seen again soon teaches the gap."""
    rng = np.random.default_rng(1)
    lots = np.repeat(np.arange(8), 100)
    X = rng.normal(size=(800, 2))
    groups = np.array([f"L{lot}/1" for lot in lots])[turn_order(400, 8, 2)]
    acc = LotAccumulator(2, gap=0, horizon=50)
    _, sizes, _ = acc.update(X, groups, np.arange(800))
    assert acc.gap == 16
    assert sizes[:2].tolist() == [8, 8] and sizes[-4:].tolist() == [100] * 4  # then whole lots
    assert LotAccumulator(2, gap=0).update(X, groups, np.arange(800))[1].max() == 8  # no horizon: pieces


def test_a_monitor_calibrated_on_one_tester_follows_two_taking_turns():
    """Without learning the turns the lot-mean charts never saw a whole lot: the 1-sd step on
    one tester was not caught within 100,000 records; now after 1,040 (as with a reference
    that shows the turns)."""
    sim = Simulator(seed=100, n_tests=20, parts_per_wafer=50, wafers_per_lot=5, stream_seed=1)
    ref = sim.generate(10_000)
    mon = DriftMonitor(ref.X, ref.feature_names,
                       reference_groups=np.char.add("S0-", np.char.add(np.char.add(ref.lot_id, "/"), ref.wafer_id)),
                       reference_strata={s: getattr(ref, s).astype(str) for s in ("tester", "site", "fab")},
                       reference_dies=ref.x * 65536 + ref.y, seed=0)
    assert mon.cal["lot_means"]["gap"] == 0
    X, groups, strata, dies, order, names = _interleaved(
        50_000, [5, 6], scenario="mean-shift", onset=20_000, shift_sigma=1.0, drift_test=7)
    onset = int(np.flatnonzero(order == 20_000)[0])
    signals = _signals(mon, X, groups, strata, dies)
    assert mon.lot_means.lots.gap == 32
    assert signals and all(s.position >= onset for s in signals)
    assert signals[0].detector.startswith("cusum_lot_mean") and signals[0].features[0] == names[7]
    assert signals[0].position - onset <= 3_000
