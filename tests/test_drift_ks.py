"""KS statistic and p-value parity with scipy.stats.ks_2samp."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from stream_ct.drift.ks import ReferenceRanks, ks_pvalue, ks_statistic


def _check(ref, win):
    ranks = ReferenceRanks(ref)
    d = ks_statistic(ranks, ranks.keys(win))
    for j in range(ref.shape[1]):
        r = ref[:, j][np.isfinite(ref[:, j]) & (np.abs(ref[:, j]) < 1e30)]
        w = win[:, j][np.isfinite(win[:, j]) & (np.abs(win[:, j]) < 1e30)]
        if len(w) == 0:
            assert np.isnan(d[j])
            continue
        res = stats.ks_2samp(r, w)
        assert abs(d[j] - res.statistic) < 1e-12
        assert abs(ks_pvalue(d[j], len(r), len(w)) - res.pvalue) < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_random_continuous(seed):
    rng = np.random.default_rng(seed)
    _check(rng.normal(size=(700, 6)), rng.normal(0.1, 1.2, size=(300, 6)))


@pytest.mark.parametrize("seed", range(5))
def test_heavily_tied(seed):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 4, size=(500, 5)).astype(float)
    win = rng.integers(-1, 6, size=(200, 5)).astype(float)
    win[:, 0] = 2.0  # a constant window
    _check(ref, win)


def test_nan_and_sentinels_are_dropped():
    rng = np.random.default_rng(3)
    ref, win = rng.normal(size=(400, 3)), rng.normal(size=(150, 3))
    ref[::7, 0] = np.nan
    win[::5, 1] = 9.9e37
    win[:, 2] = np.nan
    _check(ref, win)


def test_asymptotic_branch_above_10000():
    rng = np.random.default_rng(4)
    _check(rng.normal(size=(12_000, 2)), rng.normal(0.05, size=(2000, 2)))


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=60),
       st.lists(st.integers(-3, 3), min_size=1, max_size=60))
def test_property_small_integer_samples(a, b):
    _check(np.array(a, float)[:, None] / 2, np.array(b, float)[:, None] / 2)
