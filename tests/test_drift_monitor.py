"""DriftMonitor end to end on synthetic and simulated streams (no broker)."""

import collections
import copy
import json

import numpy as np
import orjson
import pytest
from scipy import stats

from stream_ct.drift import DriftMonitor, DriftSignal
from stream_ct.drift.calibration import siegmund_h
from stream_ct.drift.monitor import DEFAULT_BUDGET, grouped_median
from stream_ct.drift.psi import psi
from stream_ct.simulate import Simulator

IID = dict(lot_sd=0.0, wafer_sd=0.0, fab_sd=0.0, tester_sd=0.0)


def _strata(batch):
    return {"tester": batch.tester, "site": batch.site, "fab": batch.fab}


def _dies(batch):
    return batch.x * 65536 + batch.y


def _groups(batch):
    return np.char.add(np.char.add(batch.lot_id, "/"), batch.wafer_id)


def _monitor(sim, n_ref, dies=True, **kw):
    """The product's setup: lot/wafer groups, strata, and die positions unless ``dies=False``."""
    ref = sim.generate(n_ref)
    return DriftMonitor(ref.X, ref.feature_names, reference_groups=_groups(ref),
                        reference_strata=_strata(ref), reference_dies=_dies(ref) if dies else None, **kw)


def _update(mon, batch):
    return mon.update(batch.X, strata=_strata(batch),
                      dies=None if mon.die_pattern is None else _dies(batch), groups=_groups(batch))


def _first_after(mon, sim, onset, limit, step=5000):
    """Stream until the first signal at or after ``onset`` (stream positions count from the
    monitor's start) that names the drifting test; returns (signal, other signals)."""
    other, key = [], sim.feature_names[sim.drift_test]
    while mon.n_seen < limit:
        batch = sim.generate(step)
        for s in _update(mon, batch):
            if s.position >= onset and key in s.features:
                return s, other
            other.append(s)
    return None, other


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    wafer = np.repeat(np.arange(60), 100)
    ref = rng.normal(size=(6000, 4)) + rng.normal(0, 0.2, (60, 4))[wafer]
    return DriftMonitor(ref, list("abcd"), reference_groups=wafer, arl0=10_000, window=400,
                        stride=200, block=5, n_boot=30_000, seed=1)


def test_window_statistics_equal_scipy_and_per_value_bins():
    """The monitor's KS (from sorted window keys) equals scipy's ks_2samp on the centred window,
    and its PSI (from the keys) equals PSI from binning each value; quantized tests, NaN,
    an all-NaN column and a moving test included."""
    sim = Simulator(seed=5, parts_per_wafer=50, wafers_per_lot=5)
    ref = sim.generate(10_000)
    mon = DriftMonitor(ref.X, ref.feature_names, n_boot=20_000, ks_reference=4000)
    assert mon.tied.any()
    rng = np.random.default_rng(0)
    for t in range(6):
        x = sim.generate(1000).X
        x[rng.random(x.shape) < 0.01] = np.nan
        x[:, 3] = np.nan if t % 3 == 0 else x[:, 3]
        x[:, 5] += 0.2 * t
        d_ks, v_psi = mon.window_statistics(x)
        xs, n_ok = np.sort(x, axis=0), (~np.isnan(x)).sum(axis=0)
        off = np.where(n_ok > 0, grouped_median(xs, n_ok, mon.grid) - mon.ref_median, 0.0)
        off = np.where(mon.grid > 0, np.round(off / np.where(mon.grid > 0, mon.grid, 1)) * mon.grid, off)
        xc = mon.snap(x - off, np.flatnonzero((off != 0) & (mon.grid > 0) & mon.tied))
        ok = ~np.isnan(xc)
        expected = [stats.ks_2samp(mon.ranks.sorted[j], xc[ok[:, j], j]).statistic if ok[:, j].any() else np.nan
                    for j in range(x.shape[1])]
        np.testing.assert_allclose(d_ks, expected, atol=1e-12)
        counts = mon.bins.counts_of_bins(mon.bins.bin_index(np.where(ok, xc, 0.0)), ok)
        np.testing.assert_allclose(v_psi, psi(mon.bins.ref_counts, counts, mon.psi_smoothing, mon.bins.n_bins),
                                   atol=1e-12)


def test_invalid_values_are_counted_and_ignored(small):
    mon = DriftMonitor.from_state(small.state_dict())
    X = np.random.default_rng(1).normal(size=(1000, 4))
    X[::10, 0] = np.nan
    X[::20, 1] = 9.9e37
    X[:5, 2] = -np.inf
    signals = mon.update(X, groups=np.repeat(np.arange(10), 100))
    snap = mon.snapshot()
    assert snap["invalid_counts"] == {"a": 100, "b": 50, "c": 5, "d": 0}
    assert all(np.isfinite(v) for v in snap["latest"]["ks"].values())
    assert signals == []
    orjson.dumps(snap)


def test_a_sparsely_sampled_test_keeps_its_reference_values():
    """A test measured on one part in 100 keeps all its reference values when the KS/PSI
    sample thins the reference (every 4th row would hold none of them: 1 mod 100 is odd)."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(16_000, 2))
    ref[np.arange(16_000) % 100 != 1, 1] = np.nan
    mon = DriftMonitor(ref, ["dense", "sparse"], n_boot=2000, ks_reference=4000)
    assert mon.ranks.n.tolist() == [4000, 160]
    np.testing.assert_array_equal(mon.ranks.sorted[0], np.sort(ref[::4, 0]))


def test_state_dict_round_trip_resumes_identically(small):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 4))
    X[1500:, 3] += 1.0
    a = DriftMonitor.from_state(small.state_dict())
    wafer = np.repeat(np.arange(30), 100)  # the split at 1,234 falls inside a wafer
    a.update(X[:1234], strata={"tester": np.array(["T1", "T2"] * 617)}, groups=wafer[:1234])
    b = DriftMonitor.from_state(copy.deepcopy(a.state_dict()))
    tester = np.array(["T1", "T2"] * 883)
    sa = a.update(X[1234:], strata={"tester": tester}, groups=wafer[1234:])
    sb = b.update(X[1234:], strata={"tester": tester}, groups=wafer[1234:])
    assert [s.to_event() for s in sa] == [s.to_event() for s in sb] and sa
    assert a.n_seen == b.n_seen == 3000
    assert np.array_equal(a.cal["ks"], b.cal["ks"])


def test_a_state_taken_does_not_change_as_the_monitor_runs_on(small):
    mon = DriftMonitor.from_state(small.state_dict())
    X = np.random.default_rng(4).normal(size=(400, 4))
    mon.update(X[:200], groups=np.repeat(np.arange(2), 100))
    taken = mon.state_dict()
    kept = copy.deepcopy(taken)
    mon.update(X[200:], groups=np.repeat(np.arange(2, 4), 100))
    for key in ("ring", "history", "invalid_counts"):
        assert np.array_equal(taken[key], kept[key], equal_nan=True), key
    assert [b["state"].tolist() for b in taken["global_banks"]] == [b["state"].tolist() for b in kept["global_banks"]]


def test_rows_of_groups_dies_and_strata_must_match_the_batch(small):
    mon = DriftMonitor.from_state(small.state_dict())
    X = np.zeros((300, 4))
    with pytest.raises(ValueError, match=r"groups needs one value per row of X \(300\), got 250"):
        mon.update(X, groups=np.zeros(250))
    with pytest.raises(ValueError, match=r"tester needs one value per row of X \(300\), got 200"):
        mon.update(X, strata={"tester": np.array(["T1"] * 200)}, groups=np.zeros(300))


def test_a_snapshot_before_the_first_look_is_strict_json(small):
    snap = DriftMonitor.from_state(small.state_dict()).snapshot()
    assert all(f["ks"] is None and f["psi"] is None for f in snap["top_features"])
    json.dumps(snap, allow_nan=False)


def test_signal_event_is_json_safe(small):
    mon = DriftMonitor.from_state(small.state_dict())
    X = np.random.default_rng(3).normal(size=(2000, 4)) * np.array([1, 1, 3, 1])
    signals = mon.update(X, groups=np.repeat(np.arange(20), 100))
    assert any(s.detector == "ks" and s.features[0] == "c" for s in signals)
    ks = next(s for s in signals if s.detector == "ks")
    event = orjson.loads(orjson.dumps(ks.to_event()))
    assert event["detector"] == "ks" and 0 <= event["p_value"] < 1e-6
    assert isinstance(ks, DriftSignal) and event["position"] == ks.position


def test_a_cusum_signal_gives_each_feature_its_own_crossing_whatever_the_batches(small):
    """Two tests shifting 800 records apart in one batch: one signal at the first crossing,
    and each test's own crossing where a split batch reports it."""
    X = np.random.default_rng(4).normal(size=(2000, 4))
    X[100:, 0] += 3
    X[900:, 1] += 3
    groups = np.repeat(np.arange(20), 100)

    def cusum(batches):
        mon = DriftMonitor.from_state(small.state_dict())
        return [s for a, b in batches for s in mon.update(X[a:b], groups=groups[a:b])
                if s.detector == "cusum" and s.stratum is None]

    whole = cusum([(0, 2000)])[0]
    split = cusum([(0, 500), (500, 2000)])
    assert whole.positions["a"] == whole.position < 200 and 900 <= whole.positions["b"] < 1000
    assert split[0].positions == {"a": whole.positions["a"]} and split[1].positions["b"] == whole.positions["b"]
    assert orjson.loads(orjson.dumps(whole.to_event()))["positions"] == whole.positions


def test_iid_one_sigma_shift_near_cusum_optimum():
    """i.i.d. parts: a 1-sigma shift in one of 20 tests is caught within 150 records
    (oracle one-chart CUSUM at ARL0 = 1e5: about 20)."""
    onset = 20_000 + 3000
    sim = Simulator(scenario="mean-shift", seed=3, n_tests=20, onset=onset, **IID)
    mon = _monitor(sim, 20_000)
    signal, early = _first_after(mon, sim, onset - 20_000, 10_000, step=1000)
    assert early == []
    assert signal is not None and signal.position - (onset - 20_000) <= 150
    assert signal.features[0] == sim.feature_names[sim.drift_test]


@pytest.fixture(scope="module")
def floor_state():
    """A reference of 20 lots with the simulator's lot, wafer, fab and tester variation."""
    sim = Simulator(scenario="none", seed=11, n_tests=20)
    return _monitor(sim, 200_000, seed=0).state_dict()


def test_floor_one_sigma_shift_caught(floor_state):
    """Lot offsets (sd 0.3 part sigma) hide a persistent shift until about a lot has passed."""
    onset = 200_000 + 20_000
    sim = Simulator(scenario="mean-shift", seed=11, n_tests=20, onset=onset)
    sim.generate(200_000)
    mon = DriftMonitor.from_state(floor_state)
    signal, _ = _first_after(mon, sim, onset - 200_000, 150_000)
    assert signal is not None and signal.position - (onset - 200_000) <= 60_000
    assert sim.feature_names[sim.drift_test] in signal.features


def test_floor_half_sigma_step_at_a_lot_boundary_caught_by_the_lot_mean_chart(floor_state):
    """0.5 sd from a lot's first record: smaller than the lot-to-lot spread for the charts
    against the reference mean, invisible within wafers and lots; each whole lot's mean
    against the earlier lots' shows it after a few lots (sixth drift round: missed within
    200,000 records; here the large-step chart, as the global charts are off at the larger
    subgroups on every test of this 20-lot reference)."""
    onset = 200_000 + 20_000
    sim = Simulator(scenario="mean-shift", seed=11, n_tests=20, onset=onset, shift_sigma=0.5)
    sim.generate(200_000)
    mon = DriftMonitor.from_state(floor_state)
    signal, _ = _first_after(mon, sim, onset - 200_000, 100_000)
    assert signal is not None and signal.detector in ("cusum_lot_mean", "cusum_lot_mean_large")
    assert signal.position - (onset - 200_000) <= 60_000
    assert signal.features[0] == sim.feature_names[sim.drift_test] and signal.effect_size > 0.25


def test_a_restored_monitor_reuses_the_simulated_lot_thresholds(floor_state, monkeypatch):
    """The lot-mean charts' late-joining thresholds are simulated once, at construction."""
    import stream_ct.drift.self_starting as self_starting

    def simulate(*args, **kwargs):
        raise AssertionError("thresholds simulated again on restore")

    monkeypatch.setattr(self_starting, "lagged_threshold", simulate)
    mon = DriftMonitor.from_state(floor_state)
    assert mon.lot_means.lag == 20
    np.testing.assert_array_equal(mon.lot_means.thresholds, floor_state["calibration"]["lot_means"]["h"])
    arl = mon.arl0 * 2 * len(mon.feature_names) / (mon.budget["lots"] * mon.lot_means.lot_records)
    assert (mon.lot_means.thresholds[0] > siegmund_h(0.5, arl) + 1).all()  # lots joining late


def test_floor_step_inside_a_lot_caught_by_the_within_wafer_charts(floor_state):
    """A 1-sd step in the middle of a wafer: the parts after it stand out against the earlier
    parts of their own wafer, whatever the lot's and wafer's offsets (the global charts need
    about a lot, above)."""
    onset = 200_000 + 14_150  # wafer 11 of its lot, part 150
    sim = Simulator(scenario="mean-shift", seed=11, n_tests=20, onset=onset)
    sim.generate(200_000)
    mon = DriftMonitor.from_state(floor_state)
    signal, early = _first_after(mon, sim, onset - 200_000, 40_000, step=2000)
    assert early == []
    assert signal is not None and signal.position - (onset - 200_000) <= 150
    assert signal.detector == "cusum_wafer" and signal.features[0] == sim.feature_names[sim.drift_test]


def test_floor_tester_offset_caught_and_attributed(floor_state):
    """A 1-sd offset on tester T2 from the middle of a lot of the default floor: T2's wafers
    stand out against the other testers' wafers of the same lot (the lot's offset cancels);
    the within-lot chart of level T2 names it."""
    onset = 200_000 + 14_150
    sim = Simulator(scenario="tester-offset", seed=11, n_tests=20, onset=onset, shift_sigma=1.0)
    sim.generate(200_000)
    mon = DriftMonitor.from_state(floor_state)
    key, found, early = sim.feature_names[sim.drift_test], None, []
    while mon.n_seen < 60_000 and found is None:
        for s in _update(mon, sim.generate(2000)):
            if s.position < onset - 200_000:
                early.append(s)
            elif s.stratum == {"tester": "T2"} and key in s.features:
                found = s
                break
    assert not early
    assert found is not None and found.detector == "cusum_lot"
    assert found.position - (onset - 200_000) <= 40_000


def test_a_fab_seen_in_few_lots_keeps_the_lot_variation(floor_state):
    """FAB1 holds 4 of the reference's 20 lots, and they happen to agree: its own rates show
    no lot-to-lot variation. Floored by the pooled within-level rates, its charts stay quiet
    on 300,000 no-drift records (with its own rates alone: 2 alarms, at 72,799 and 249,599)."""
    sim = Simulator(scenario="none", seed=11, n_tests=20)
    sim.generate(200_000)
    mon = DriftMonitor.from_state(floor_state)
    wafer = str(mon.wafer_records)
    assert (mon.cal["levels"]["fab=FAB1"]["v"][wafer] > 2).all()
    stratum_signals = []
    while mon.n_seen < 300_000:
        stratum_signals += [s for s in _update(mon, sim.generate(10_000)) if s.stratum]
    assert stratum_signals == []


def test_a_monitor_with_wafer_groups_needs_the_groups(floor_state):
    mon = DriftMonitor.from_state(floor_state)
    with pytest.raises(ValueError, match="pass groups="):
        mon.update(np.zeros((5, 20)), dies=np.zeros(5, dtype=np.int64))


def test_wafers_in_pieces_are_said_once_and_whole_wafers_never(floor_state):
    """An instance reading 2 of 6 part-keyed partitions sees each wafer in pieces: the
    monitor says so once, with the remedy; the same records in tester order raise nothing."""
    sim = Simulator(scenario="none", seed=12, n_tests=20)
    sim.generate(200_000)
    whole = DriftMonitor.from_state(floor_state)
    for _ in range(3):
        _update(whole, sim.generate(2000))
    assert not [w for w in whole.warnings if "pieces" in w]
    split = DriftMonitor.from_state(floor_state)
    for _ in range(3):
        batch = sim.generate(2000)
        partition = batch.index % 6  # part keys hash evenly over the partitions
        mine = np.flatnonzero(partition < 2)
        order = mine[np.argsort(partition[mine], kind="stable")]  # one poll per partition
        sub = copy.copy(batch)
        for name in ("X", "tester", "site", "fab", "x", "y", "lot_id", "wafer_id"):
            setattr(sub, name, getattr(batch, name)[order])
        _update(split, sub)
    pieces = [w for w in split.warnings if "pieces" in w]
    assert len(pieces) == 1 and "key the input by lot/wafer" in pieces[0], split.warnings


def test_tester_offset_caught_and_attributed():
    """A 1-sd offset on tester T2 only, in a fab of small lots (the 40,000-record reference spans
    160 lots of 5 wafers): caught within 10,000 records, nothing before the onset, and named
    with T2: within a lot one tester up is the others down, so their charts signal too,
    mirrored (here T1 first, 250 records before T2); T2 is the level that signals most
    (3 of 6 here, each other tester once), and the only one upwards."""
    onset, n_ref = 10_000, 40_000
    sim = Simulator(scenario="tester-offset", seed=5, n_tests=50, onset=n_ref + onset, shift_sigma=1.0,
                    parts_per_wafer=50, wafers_per_lot=5)
    ref = sim.generate(n_ref)
    mon = DriftMonitor(ref.X, ref.feature_names, reference_groups=_groups(ref),
                       reference_strata=_strata(ref), reference_dies=_dies(ref), window=1000, stride=250)
    drift_key = sim.feature_names[sim.drift_test]
    signals = []
    while mon.n_seen < onset + 10_000:
        signals += _update(mon, sim.generate(1000))
    assert [s for s in signals if s.position < onset] == []
    named = [s for s in signals if s.stratum and drift_key in s.features]
    counts = collections.Counter(s.stratum["tester"] for s in named)
    assert counts["T2"] > max(n for tester, n in counts.items() if tester != "T2")
    assert all((s.effect_size > 0) == (s.stratum["tester"] == "T2") for s in named)

    # a stratum signal's histograms count its level's records, in the window and the reference
    def mean_bin_shift(h):
        bins = np.arange(len(h["current"]))
        return np.average(bins, weights=h["current"]) - np.average(bins, weights=h["reference"])

    (t2,), (everyone,) = mon.histograms([drift_key], {"tester": "T2"}), mon.histograms([drift_key])
    t2_rows = mon.ring_strata["tester"] == "T2"
    assert sum(t2["current"]) == int((~np.isnan(mon.ring[t2_rows, sim.drift_test])).sum()) < sum(everyone["current"])
    assert sum(t2["reference"]) == int((_strata(ref)["tester"] == "T2").sum())
    assert mean_bin_shift(t2) > 2 * mean_bin_shift(everyone) > 0
    restored = DriftMonitor.from_state(mon.state_dict())
    assert restored.histograms([drift_key], {"tester": "T2"}) == [t2]
    assert mon.histograms([drift_key], {"tester": "no such tester"})[0]["current"] == [0] * len(t2["current"])


def test_idle_families_leave_their_share_to_the_running_ones(small):
    """Wafer ids without lots: the within-wafer charts run, the lot-mean charts cannot."""
    assert small.lot_means is None and small.within is not None and small.budget["lots"] == 0
    running = {name: share for name, share in DEFAULT_BUDGET.items() if name != "lots"}
    assert small.budget == pytest.approx({"lots": 0.0, **{name: share / sum(running.values())
                                                          for name, share in running.items()}})
    assert DriftMonitor.from_state(small.state_dict()).budget == small.budget


@pytest.mark.slow
def test_without_lots_the_running_families_stay_within_target():
    """Wafer ids that name no lot: the lot-mean charts' share goes to the other families,
    and 1M i.i.d. records still raise at most the 10 alarms ARL0 = 100,000 allows."""
    sim = Simulator(scenario="none", seed=3, n_tests=50, **IID)
    ref = sim.generate(200_000)
    wafers = lambda b: np.char.add(b.lot_id, b.wafer_id)  # noqa: E731 - no "/": no lots
    mon = DriftMonitor(ref.X, ref.feature_names, reference_groups=wafers(ref), reference_strata=_strata(ref),
                       seed=0)
    assert mon.lot_means is None and mon.budget["lots"] == 0 and mon.budget["cusum"] > DEFAULT_BUDGET["cusum"]
    alarms = 0
    for _ in range(100):
        b = sim.generate(10_000)
        alarms += len(mon.update(b.X, strata=_strata(b), groups=wafers(b)))
    assert alarms <= 10


@pytest.mark.slow
@pytest.mark.parametrize("dies", [True, False], ids=["die-patterns-removed", "raw-values"])
def test_one_million_no_drift_records_within_target(dies):
    """ARL0 = 100,000: at most 10 false alarms expected in 1M records; allow no more."""
    sim = Simulator(scenario="none", seed=1, n_tests=50)
    mon = _monitor(sim, 200_000, dies=dies, seed=0)
    alarms = 0
    for _ in range(100):
        alarms += len(_update(mon, sim.generate(10_000)))
    assert alarms <= 10


def test_raw_value_windows_allow_for_wafer_location_spread():
    """center=False: KS/PSI on raw values, thresholds widened by the window-mean spread."""
    rng = np.random.default_rng(4)
    wafer = np.repeat(np.arange(100), 100)
    ref = rng.normal(size=(10_000, 2)) + rng.normal(0, 0.3, (100, 2))[wafer]
    kw = dict(reference_groups=wafer, arl0=10_000, window=400, stride=200, block=5,
              n_boot=20_000, seed=0)
    raw = DriftMonitor(ref, ["a", "b"], center=False, **kw)
    aligned = DriftMonitor(ref, ["a", "b"], **kw)
    assert (raw.cal["ks"] > aligned.cal["ks"]).all()
    X = rng.normal(size=(2000, 2))
    X[:, 1] += 3.0
    assert any(s.detector == "ks" and s.features == ["b"] for s in raw.update(X, groups=np.repeat(np.arange(20), 100)))


def test_histograms_of_the_current_window_as_measured(small):
    """For a drift event: the named features' PSI bins with the reference's counts and the last
    ``window`` records' (not centred, so a mean shift shows); unknown names are left out."""
    mon = DriftMonitor.from_state(small.state_dict())
    X = np.random.default_rng(5).normal(size=(1000, 4))
    X[:, 2] += 3.0
    X[-1, 1] = np.nan
    mon.update(X, groups=np.repeat(np.arange(10), 100))
    hists = mon.histograms(["c", "b", "no such test"])
    assert [h["feature"] for h in hists] == ["c", "b"]
    for h, j in zip(hists, (2, 1)):
        k = int(mon.bins.n_bins[j])
        assert h["edges"] == [None, *mon.bins.edges[j, : k - 1].tolist(), None]
        assert h["reference"] == mon.bins.ref_counts[j, :k].tolist()
        assert h["current"] == mon.bins.counts(X[-mon.window:])[j, :k].tolist()
    assert sum(hists[0]["current"]) == mon.window and sum(hists[1]["current"]) == mon.window - 1
    assert hists[0]["current"][-1] > 0.9 * mon.window  # shifted 3 sd: nearly all above the top edge
    assert orjson.loads(orjson.dumps(hists)) == hists
