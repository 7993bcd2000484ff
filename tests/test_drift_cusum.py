"""Vectorized CUSUM charts against a plain per-record loop; calibration helpers."""

import numpy as np
from scipy import stats

from stream_ct.drift.calibration import (bootstrap_stream, tail_quantile, variance_rate, variance_rate_curve,
                                         siegmund_arl, siegmund_h, wafer_blocks)
from stream_ct.drift.cusum import CusumBank, lindley


def _loop(z, k, h):
    s_hi = s_lo = 0.0
    alarms = []
    for t, v in enumerate(z):
        s_hi, s_lo = max(0.0, s_hi + v - k), max(0.0, s_lo - v - k)
        if s_hi > h:
            alarms.append((t, 1))
            s_hi = 0.0
        if s_lo > h:
            alarms.append((t, -1))
            s_lo = 0.0
    return alarms, s_hi, s_lo


def test_lindley_matches_recursion():
    rng = np.random.default_rng(0)
    y = rng.normal(-0.2, 1, size=(500, 3))
    s0 = np.array([0.0, 2.0, 5.0])
    path = lindley(y, s0)
    s = s0.copy()
    for t in range(500):
        s = np.maximum(0, s + y[t])
        assert np.allclose(path[t], s)


def test_bank_alarms_and_resets_match_loop_across_batches():
    rng = np.random.default_rng(1)
    z = rng.normal(size=3000)
    z[1000:] += 0.8
    bank = CusumBank(mean=np.zeros(1), sigma=np.ones(1), k=0.5, h=np.array([4.0]))
    got = []
    for a, b in ((0, 7), (7, 1000), (1000, 1333), (1333, 3000)):
        got += [(al.position, al.side) for al in bank.update(
            z[a:b, None], np.ones((b - a, 1), bool), np.arange(a, b))]
    want, s_hi, s_lo = _loop(z, 0.5, 4.0)
    assert sorted(got) == sorted(want) and len(want) > 10
    assert np.allclose(bank.state[:, 0], [s_hi, s_lo])


def test_subgroup_means_wait_for_complete_groups_and_skip_missing():
    bank = CusumBank(mean=np.zeros(1), sigma=np.ones(1), k=0.0, h=np.array([2.5]), subgroup=3)
    x = np.array([1.0, 1.0, np.nan, 1.0, 1.0, 1.0, 1.0])[:, None]
    valid = ~np.isnan(x)
    alarms = bank.update(np.nan_to_num(x[:4]), valid[:4], np.arange(4))
    assert alarms == [] and bank.state[0, 0] == 1.0 and len(bank.pending) == 1
    alarms = bank.update(np.nan_to_num(x[4:]), valid[4:], np.arange(4, 7))
    assert [a.position for a in alarms] == [] and bank.state[0, 0] == 2.0
    alarms = bank.update(np.ones((3, 1)), np.ones((3, 1), bool), np.arange(7, 10))
    assert [a.position for a in alarms] == [8]


def test_siegmund_against_simulation():
    rng = np.random.default_rng(2)
    k, h = 0.5, 3.0
    y = rng.normal(size=(200_000, 4)) - k
    alarms = sum(len(_loop(col + k, k, h)[0]) for col in y[:50_000].T)
    arl = 4 * 50_000 / max(1, alarms / 2)  # two-sided: alarms of one side
    assert 0.7 < arl / siegmund_arl(k, h) < 1.4
    assert abs(siegmund_arl(k, siegmund_h(k, 5000)) - 5000) < 1


def test_tail_quantile_is_exact_for_exponential_data():
    rng = np.random.default_rng(3)
    sample = rng.exponential(2.0, size=(50_000, 2))
    q = tail_quantile(sample, 1e-6)
    assert np.allclose(q, 2.0 * np.log(1e6), rtol=0.05)



def test_tail_quantile_follows_a_tail_heavier_than_exponential():
    """Window statistics of testers taking turns are a mixture (each window holds other lots):
    their tail is heavier than exponential, and an exponential fitted per column from 300
    null samples is crossed 3.4x as often as it should be; the pooled far slope and the
    shrunk scales bring it to about the rate asked for."""
    rng = np.random.default_rng(5)

    def draw(n):
        return rng.exponential(size=(n, 50)) * rng.gamma(3.0, 1 / 3.0, size=(n, 50)) ** 2

    null, stream, p = draw(300), draw(100_000), 1e-3
    u = np.quantile(null, 0.9, axis=0)
    per_column = u + np.nanmean(np.where(null > u, null - u, np.nan), axis=0) * np.log(0.1 / p)
    assert (stream > per_column).mean() / p > 2.5
    assert 0.5 < (stream > tail_quantile(null, p)).mean() / p < 2.0

def test_variance_rate_sees_shared_offsets_and_short_patterns():
    rng = np.random.default_rng(4)
    iid = rng.normal(size=(20_000, 1))
    blocky = np.repeat(rng.normal(size=200), 100)[:, None] + rng.normal(size=(20_000, 1))
    blocky /= blocky.std()
    assert variance_rate(iid, 200)[0] < 1.5
    assert variance_rate(blocky, 300)[0] > 20
    # a zero-mean pattern repeated every 100 values: no long-run excess, short-run excess
    pattern = np.tile(np.sin(np.linspace(0, 2 * np.pi, 100, endpoint=False)), 200)[:, None]
    wavy = pattern + rng.normal(size=(20_000, 1))
    assert variance_rate(wavy / wavy.std(), 300)[0] > 5


def test_variance_rate_curve_uses_the_plain_autocovariance_at_every_length():
    """The FFT is padded to a fast length: the curve must still come from the plain
    autocovariance sums (no wrap-around), for series of any length, 1 and primes included."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 7, 97, 1009):
        z = rng.normal(size=(n, 2)) + np.linspace(0, 3, n)[:, None]  # a trend: wrap-around would show
        max_lag = max(1, min(n // 2, 40))
        c = z - z.mean(axis=0)
        acov = np.array([(c[:n - lag] * c[lag:]).sum(axis=0) / n for lag in range(max_lag + 1)])
        rho = acov[1:] / np.maximum(acov[0], 1e-300)
        lags = np.arange(1, max_lag + 1)[:, None]
        rate = 1 + 2 * np.array([rho[:L - 1].sum(axis=0) - (lags[:L - 1] * rho[:L - 1]).sum(axis=0) / L
                                 for L in range(1, max_lag + 1)])
        df = np.maximum(1.0, 1.5 * n / lags - 1)
        want = np.maximum(1 + (rate - 1) * df / stats.chi2.ppf(0.01, df), 1.0)
        starts, bound = variance_rate_curve(z, max_lag)
        np.testing.assert_allclose(bound, np.maximum.reduceat(want, starts - 1, axis=0), rtol=1e-9, atol=1e-12)


def test_bootstrap_stream_keeps_whole_consecutive_wafers():
    groups = np.repeat(np.arange(10), 5)
    blocks = wafer_blocks(groups, 50)
    rows, runs = bootstrap_stream(blocks, 40, np.random.default_rng(5), run=2)
    assert len(rows) == 40
    g = groups[rows]
    changes = np.flatnonzero(np.diff(g)) + 1
    assert all(np.all(g[a:b] == g[a]) and b - a == 5 for a, b in zip(changes[:-1], changes[1:]))


def test_error_stream_detector_flags_a_rise_in_errors_only():
    from stream_ct.drift.river_adapters import ErrorStreamDetector

    rng = np.random.default_rng(6)
    up = np.concatenate([rng.random(4000) < 0.05, rng.random(4000) < 0.25])
    down = np.concatenate([rng.random(4000) < 0.25, rng.random(4000) < 0.05])
    det = ErrorStreamDetector()
    signals = det.update(up[:2500]) + det.update(up[2500:])
    assert signals and all(s.position >= 4000 for s in signals) and det.n_seen == 8000
    assert ErrorStreamDetector().update(down) == []


def test_error_stream_detector_skips_a_missing_error():
    from stream_ct.drift.river_adapters import ErrorStreamDetector

    rng = np.random.default_rng(6)
    up = np.concatenate([rng.random(4000) < 0.05, rng.random(4000) < 0.25]).astype(float)
    up[100] = np.nan  # one NaN made ADWIN's estimate NaN for good: no signal ever after
    det = ErrorStreamDetector()
    signals = det.update(up)
    assert signals and all(s.position >= 4000 for s in signals) and det.n_seen == 8000


def _loop_bank(z, k, h):
    """Per-record reference for a bank: alarms (row, feature, side), end state, measured
    increments since each chart was last 0, and each alarm's shift estimate ``k + S/n``."""
    d = z.shape[1]
    s, run, alarms, shifts = np.zeros((2, d)), np.zeros((2, d), dtype=np.int64), [], {}
    for t, row in enumerate(z):
        for j, v in enumerate(row):
            for side in (0, 1):
                if not np.isnan(v):
                    s[side, j] = max(0.0, s[side, j] + (v if side == 0 else -v) - k)
                    run[side, j] = 0 if s[side, j] == 0 else run[side, j] + 1
                if s[side, j] > h:
                    alarms.append((t, j, 1 - 2 * side))
                    shifts[alarms[-1]] = (k + s[side, j] / run[side, j]) * (1 - 2 * side)
                    s[side, j], run[side, j] = 0.0, 0
    return sorted(alarms), s, run, shifts


def test_bank_with_quiet_charts_skipped_matches_loop_on_state_runs_and_alarms():
    """Long batches (the block bound decides which charts get the exact path), short ones
    (every chart exact), missing values, charts near and over the threshold, both sides."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(1500, 6))
    z[:, 1] += 0.6   # alarms upward
    z[:, 2] -= 0.45  # alarms downward, some near misses
    z[:, 3] *= 1.6   # wide: the bound fires, the exact path often does not cross
    z[rng.random(z.shape) < 0.05] = np.nan
    z[200:260, 4] = np.nan  # a long gap
    bank = CusumBank(mean=np.zeros(6), sigma=np.ones(6), k=0.5, h=np.full(6, 6.0))
    got, a = {}, 0
    for b in (1, 5, 40, 41, 400, 417, 1000, 1001, 1500):
        x = z[a:b]
        got |= {(al.position, al.feature, al.side): al.shift
                for al in bank.update(np.nan_to_num(x), ~np.isnan(x), np.arange(a, b))}
        a = b
    want, state, run, shifts = _loop_bank(z, 0.5, 6.0)
    assert sorted(got) == want and len(want) > 20 and {f for _, f, _ in want} >= {1, 2, 3}
    assert np.allclose(bank.state, state, atol=1e-9)
    assert (bank.run == run).all()
    np.testing.assert_allclose([got[a] for a in want], [shifts[a] for a in want], rtol=1e-9)


def test_missing_values_do_not_dilute_the_shift_estimate():
    """A 1.5-sigma shift read with every other value missing is estimated as without gaps
    (the run length counts measured increments only)."""
    z = np.full((400, 1), 1.5)
    gappy = np.full((800, 1), np.nan)
    gappy[::2] = z
    bank, gappy_bank = (CusumBank(mean=np.zeros(1), sigma=np.ones(1), k=0.5, h=np.array([5.0]))
                        for _ in range(2))
    plain = bank.update(z, None, np.arange(400))
    holes = gappy_bank.update(np.nan_to_num(gappy), ~np.isnan(gappy), np.arange(800))
    assert len(plain) == len(holes) > 10
    np.testing.assert_allclose([a.shift for a in holes], [a.shift for a in plain])
    assert all(abs(a.shift - 1.5) < 0.2 for a in holes)


def test_batches_in_a_reused_buffer_give_the_same_charts():
    """The caller may refill its batch array: an unfinished subgroup must not keep a view of it."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1200, 4))
    x[600:, 2] += 1.0

    def run(reuse):
        bank = CusumBank(mean=np.zeros(4), sigma=np.full(4, 0.25), k=0.5, h=np.full(4, 6.0), subgroup=16)
        buffer, out = np.empty((40, 4)), []
        for a in range(0, 1200, 40):  # 40 = 2.5 subgroups: every other batch leaves a remainder
            batch = buffer if reuse else np.empty((40, 4))
            batch[:] = x[a:a + 40]
            out += [(al.position, al.feature, al.side) for al in bank.update(batch, None, np.arange(a, a + 40))]
        return out, bank.state.tolist()

    alarms, state = run(reuse=False)
    assert alarms and run(reuse=True) == (alarms, state)


def test_a_bank_of_charts_all_off_costs_nothing_and_never_alarms():
    """h = inf everywhere (a short reference's unsafe charts): update returns at once."""
    bank = CusumBank(np.zeros(3), np.ones(3), 0.5, np.full(3, np.inf), subgroup=4)
    X = np.full((100, 3), 50.0)
    assert bank.update(X, None, np.arange(100)) == []
    assert (bank.state == 0).all() and len(bank.pending) == 0
