"""Die-position offsets (wafer-map patterns) and the monitor's charts on pattern-free values."""

import numpy as np
import pytest

from stream_ct.drift import DriftMonitor
from stream_ct.drift.die_pattern import DiePattern
from stream_ct.features import die_ids
from stream_ct.simulate import Simulator

IID = dict(lot_sd=0.0, wafer_sd=0.0, fab_sd=0.0, tester_sd=0.0)


def _wafers(n_wafers, n_dies):
    die = np.tile(np.arange(n_dies), n_wafers)
    radial = (die / n_dies) ** 2 - 1 / 3  # grows toward the edge, mean ~0
    return die, radial


def test_offsets_recover_the_pattern_and_leave_plain_tests_alone():
    rng = np.random.default_rng(0)
    die, radial = _wafers(400, 64)
    X = np.c_[rng.normal(size=die.size) + 2.0 * radial, rng.normal(size=die.size)]
    off = DiePattern(X, die).offsets(np.arange(64))
    truth = 2.0 * ((np.arange(64) / 64) ** 2 - 1 / 3)
    assert np.abs(off[:, 0] - (truth - truth.mean())).max() < 0.2  # se of a die mean: 0.05
    raw = np.array([X[die == i, 1].mean() - X[:, 1].mean() for i in range(64)])
    assert np.sqrt((off[:, 1] ** 2).mean()) < 0.5 * np.sqrt((raw ** 2).mean())  # shrunk


def test_offsets_average_zero_over_the_reference_and_unknown_dies_get_none():
    rng = np.random.default_rng(1)
    die, radial = _wafers(100, 30)
    X = rng.normal(size=(die.size, 3)) + np.outer(radial, [1.0, 0.0, -3.0])
    pattern = DiePattern(X, die)
    assert np.abs(pattern.offsets(die).mean(axis=0)).max() < 1e-12
    assert (pattern.offsets(np.array([-1, 30, 999])) == 0).all()


def test_invalid_values_take_no_part():
    rng = np.random.default_rng(2)
    die, radial = _wafers(200, 20)
    X = rng.normal(size=(die.size, 2)) + radial[:, None]
    bad = X.copy()
    hit = rng.random(die.size) < 0.05
    bad[hit, 0] = 9.9e37
    bad[~hit & (rng.random(die.size) < 0.05), 1] = np.nan
    off = DiePattern(bad, die).offsets(np.arange(20))
    assert np.isfinite(off).all()
    assert np.abs(off - DiePattern(X, die).offsets(np.arange(20))).max() < 0.1


def test_a_constant_test_gets_no_offsets_and_a_later_change_stays_visible():
    """A test constant on the reference (a limit, a flag) has no pattern: its offsets are 0,
    not 0/0, so a value that moves later reaches the charts instead of becoming NaN."""
    rng = np.random.default_rng(3)
    die, radial = _wafers(50, 20)
    X = np.c_[rng.normal(size=die.size) + radial, np.full(die.size, 1.5)]
    with np.errstate(all="raise"):
        pattern = DiePattern(X, die)
    assert (pattern.offsets(np.arange(20))[:, 1] == 0).all()
    moved = pattern.remove(np.c_[np.zeros(20), np.full(20, 2.5)], np.arange(20))
    assert (moved[:, 1] == 2.5).all()


def test_one_die_id_per_reference_row():
    with pytest.raises(ValueError, match="one die id per reference row"):
        DiePattern(np.zeros((10, 2)), np.arange(9))


def test_record_die_ids_are_distinct_per_position():
    records = [{"x": x, "y": y} for x in (-3, 0, 5) for y in (-1, 0, 7)] + [{"x": 1}, {}]
    ids = die_ids(records)
    assert len(set(ids[:9].tolist())) == 9 and (ids[:9] >= 0).all()
    assert ids[9:].tolist() == [-1, -1]


@pytest.fixture(scope="module")
def patterned():
    """i.i.d. parts, 20 tests; the drifting test carries the strongest radial pattern."""
    probe = Simulator(n_tests=20, seed=21, parts_per_wafer=100, **IID)
    test = int(np.argmax(np.abs(probe._radial).std(axis=0)))  # the simulator's pattern amplitudes
    sim = Simulator(scenario="mean-shift", seed=21, n_tests=20, parts_per_wafer=100, drift_test=test,
                    onset=60_000 + 4_000, shift_sigma=0.5, **IID)
    ref = sim.generate(60_000)
    kw = dict(reference_groups=ref.wafer_index, arl0=100_000, n_boot=40_000, seed=0)
    plain = DriftMonitor(ref.X, ref.feature_names, **kw)
    centred = DriftMonitor(ref.X, ref.feature_names, reference_dies=ref.x * 65536 + ref.y, **kw)
    return sim, test, plain, centred


def test_charts_on_pattern_free_values_have_lower_thresholds(patterned):
    """In the test's units (threshold x subgroup sd): much lower for the short subgroups that
    see the pattern, no higher for those that average it out (within 5 %: the variance
    rates' bound for all tests together widens their estimates' noise; 1.03 at 64)."""
    _, test, plain, centred = patterned
    for a, b in zip(plain.global_banks, centred.global_banks):
        ratio = (b.h * b.sigma)[test] / (a.h * a.sigma)[test]
        assert ratio < (0.85 if b.subgroup <= 16 else 1.05), (b.subgroup, ratio)


def test_a_half_sigma_shift_on_a_patterned_test_is_caught_sooner(patterned):
    sim, test, plain, centred = patterned
    key, delays = sim.feature_names[test], {}
    for name, mon in (("plain", plain), ("centred", centred)):
        mon = DriftMonitor.from_state(mon.state_dict())
        run = Simulator(scenario="mean-shift", seed=21, n_tests=20, parts_per_wafer=100, drift_test=test,
                        onset=60_000 + 4_000, shift_sigma=0.5, **IID)
        run.generate(60_000)
        while name not in delays and mon.n_seen < 14_000:
            b = run.generate(500)
            dies = b.x * 65536 + b.y if mon.die_pattern is not None else None
            for s in mon.update(b.X, dies=dies, groups=b.wafer_index):
                assert s.position >= 4_000, f"{name}: false alarm at {s.position}"
                if key in s.features:
                    delays[name] = s.position - 4_000
                    break
    assert "centred" in delays and delays["centred"] < 0.8 * delays.get("plain", 10_000)


def test_a_monitor_that_removes_die_patterns_needs_the_dies(patterned):
    _, _, _, centred = patterned
    mon = DriftMonitor.from_state(centred.state_dict())
    assert mon.die_pattern is not None
    with pytest.raises(ValueError, match="pass dies="):
        mon.update(np.zeros((5, 20)))
