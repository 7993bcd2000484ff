"""Self-starting CUSUM charts (stream_ct/drift/self_starting.py), no broker."""

import numpy as np
from scipy import stats

from stream_ct.drift.self_starting import MIN_REFERENCE, SelfStartingChart


def test_increments_are_independent_standard_normal_whatever_the_reference_size():
    """The property that makes the thresholds exact: under no drift, observation after
    observation, U is N(0, 1) and uncorrelated, here from a reference of only 8."""
    rng = np.random.default_rng(2)
    d, n = 4, 3000
    chart = SelfStartingChart(rng.normal(5.0, 0.3, (8, d)), k=0.5, arl=1e9, lag=0)
    u = np.vstack([chart._standardize(x) for x in rng.normal(5.0, 0.3, (n, d))])
    for j in range(d):
        assert stats.kstest(u[:, j], "norm").pvalue > 0.001
        assert abs(np.corrcoef(u[1:, j], u[:-1, j])[0, 1]) < 4 / np.sqrt(n)


def test_a_chart_without_enough_reference_values_or_budget_is_off():
    """Fewer than MIN_REFERENCE reference values of a feature, or an infinite ARL (no share
    of the budget), leave its charts off; the others run."""
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(MIN_REFERENCE + 2, 3))
    ref[3:, 0] = np.nan  # 3 values of feature 0
    chart = SelfStartingChart(ref, k=(0.5, 1.5), arl=(1000.0, np.array([1000.0, np.inf, 1000.0])), lag=5)
    small, large = chart.thresholds
    assert np.isinf(small[0]) and np.isfinite(small[1:]).all()
    assert np.isinf(large[:2]).all() and np.isfinite(large[2])
    x = np.tile([9.0, 9.0, 9.0], (6, 1))  # far off on every feature
    alarms = chart.update(x, np.arange(6))
    assert {a.feature for a in alarms} == {1, 2}
