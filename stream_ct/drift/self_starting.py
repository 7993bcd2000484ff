"""Self-starting CUSUM charts (Hawkins 1987): each observation against the earlier ones.

After ``n`` earlier observations of a feature with mean ``m`` and sd ``s`` (a reference's,
then the stream's), a new one ``x`` gives ``T = (x - m) / (s * sqrt(1 + 1/n))``, Student-t
with ``n - 1`` degrees of freedom when the observations are normal, however few the
reference holds; mapped through its CDF onto the standard normal, the increments ``U`` of
successive observations are independent N(0, 1) (Hawkins, "Self-starting cusum charts for
location and scale", 1987). A two-sided CUSUM on ``U`` with slack ``k`` then gets its exact
threshold from Siegmund's approximation: no bound on the reference's own mean error is
needed, as charts against a reference mean need one.

Each observation joins ``m`` and ``s`` only ``lag`` observations after it is charted.
Joining at once keeps ``U`` independent, but a persistent shift then becomes part of the
mean it is measured against observation by observation. With a lag consecutive ``U`` share
the estimates' error, so the threshold is simulated (``lagged_threshold``): the one whose
chance of an alarm in the first observations after the reference equals that of the chart
without lag at Siegmund's threshold.

Used on whole lots' means (``lot_means.py``) and on a tester's wafers against the rest of
their lots (``within.py``).

>>> rng = np.random.default_rng(0)
>>> chart = SelfStartingChart(rng.normal(3.0, 2.0, (20, 2)), k=0.5, arl=1000.0, lag=0)
>>> x = rng.normal(3.0, 2.0, (12, 2)) + [0.0, 6.0]                   # feature 1 moves 3 sds
>>> [(a.position, a.feature, a.side) for a in chart.update(x, np.arange(12))][:2]
[(1, 1, 1), (6, 1, 1)]
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special, stats

from stream_ct.drift.calibration import siegmund_h
from stream_ct.drift.cusum import CusumBank

#: Reference observations a feature needs for its chart (fewer: off).
MIN_REFERENCE = 8

#: A chart whose estimates hold this many times a fresh chart's reference takes its threshold
#: (``relax``): at once (1), a chart whose estimates are off carries a high sum into the lower
#: threshold: 1.6x the first 100 lots' alarms of the chart without lag (2,000 charts from
#: 20-lot references, 3,333 lots each); at 3, as many as the chart held at its first threshold
#: (1.1x), and 0.8x the chart without lag's over 1,000 lots (the held chart 0.3x).
SETTLED = 3

#: |U| cap: an observation far outside every earlier one gives a finite statistic (norm.isf(1e-300) ~ 37).
_U_MAX = 37.0


def self_starting_u(x: np.ndarray, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Hawkins' ``U`` of observations ``x`` against ``n`` earlier ones with mean ``mean`` and sum
    of squared deviations ``m2``: ``T = (x - mean) / (s sqrt(1 + 1/n))``, Student-t with
    ``n - 1`` degrees of freedom, mapped through its CDF onto the standard normal (from the
    tail beyond ``|T|``: no loss of precision far out)."""
    return t_to_normal_exact(t_statistic(x, n, mean, m2), np.maximum(n - 1, 1))


def t_statistic(x, n, mean, m2):
    """``T = (x - mean) / (s sqrt(1 + 1/n))`` of ``x`` against ``n`` earlier observations with
    mean ``mean`` and sum of squared deviations ``m2`` (``s**2 = m2 / (n - 1)``)."""
    return (x - mean) / np.sqrt(m2 / (n - 1) * (1 + 1 / n))


def t_to_normal_exact(t: np.ndarray, df) -> np.ndarray:
    """Student-t values ``t`` (``df`` degrees of freedom) mapped through the t CDF onto the
    standard normal, from the tail beyond ``|t|``."""
    return -np.sign(t) * special.ndtri(special.stdtr(df, -np.abs(t)))


def t_to_normal(t: np.ndarray, df: float, step: float = 0.002) -> np.ndarray:
    """``t_to_normal_exact`` for values ``t`` of one ``df``, interpolated linearly between
    exact values ``step`` apart (error under
    1e-7 at ``df`` 7 and more) and exact beyond them: 6x faster than the exact map on the
    simulations' 40,000 charts, where the map was 90 % of the threshold simulation.

    >>> t = np.array([-3.0, 0.1, 2.5, 40.0])
    >>> bool(np.abs(t_to_normal(t, 19) - self_starting_u(t, 20.0, 0.0, 19.0 * 20 / 21)).max() < 1e-7)
    True
    """
    a = np.abs(t)
    top = step * np.ceil(min(float(a.max(initial=0.0)), 12.0) / step)
    grid = np.arange(0.0, top + 2 * step, step)
    exact = t_to_normal_exact(grid, df)
    pos = np.minimum(a, top) / step
    i = pos.astype(np.intp)
    u = exact[i] + (pos - i) * (exact[i + 1] - exact[i])
    far = a > top
    if far.any():
        u[far] = t_to_normal_exact(a[far], df)
    return np.copysign(u, t)


def welford_add(n, mean, m2, x, seen):
    """``(n, mean, m2)`` with the observations ``x`` added where ``seen`` (Welford)."""
    n = n + seen
    delta = np.where(seen, x - mean, 0.0)
    mean = mean + delta / np.maximum(n, 1)
    return n, mean, m2 + delta * np.where(seen, x - mean, 0.0)


def exact_alarm_chance(k: float, h: float, lots: int, bins: int = 600) -> float:
    """Chance that the two-sided CUSUM (slack ``k``, threshold ``h``) on i.i.d. N(0, 1)
    increments, started at 0, alarms within ``lots`` lots: twice one side's, from the
    Brook-Evans Markov chain on ``bins`` levels (one side's chance is small where this is
    used, so the two sides rarely both alarm).

    >>> round(exact_alarm_chance(0.5, 6.258, 100), 3)   # 200,000 simulated charts: 0.054
    0.055
    """
    width = h / bins
    level = np.r_[0.0, (np.arange(1, bins + 1) - 0.5) * width]  # 0, then the bins' midpoints
    below = stats.norm.cdf(np.arange(bins + 1)[None, :] * width + k - level[:, None])
    step = np.diff(below, axis=1, prepend=0.0)  # from level i to level j (the rest: alarm)
    p = np.zeros(bins + 1)
    p[0] = 1.0
    for _ in range(lots):
        p = p @ step
    return float(2 * (1 - p.sum()))


def _tilted_reference(n0: int, chains: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and sum of squared deviations of ``n0`` N(0, 1) reference lots per chain, drawn
    with more unlucky references than chance gives (half of the means with 3x their sd, half
    of the sums at half their scale), and each chain's importance weight (at most 4)."""
    n0 = int(n0)
    se = 1 / np.sqrt(n0)
    wide = rng.random(chains) < 0.5
    mean = rng.normal(size=chains) * np.where(wide, 3 * se, se)
    shrunk = rng.random(chains) < 0.5
    m2 = rng.chisquare(n0 - 1, chains) * np.where(shrunk, 0.5, 1.0)
    p_mean, p_m2 = stats.norm.pdf(mean, scale=se), stats.chi2.pdf(m2, n0 - 1)
    q_mean = 0.5 * p_mean + 0.5 * stats.norm.pdf(mean, scale=3 * se)
    q_m2 = 0.5 * p_m2 + stats.chi2.pdf(2 * m2, n0 - 1)  # 0.5 x the density of 0.5 x chi2
    return mean, m2, p_mean / q_mean * p_m2 / q_m2


@functools.lru_cache(maxsize=8)  # one simulation serves every ARL that watches as many lots
def null_maxima(n0: int, k: float, lag: int, lots: int, chains: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest two-sided CUSUM value (slack ``k``) of each of ``chains`` simulated charts over
    their first ``lots`` lots, and each chart's importance weight: normal lot means, ``n0``
    reference lots (drawn by ``_tilted_reference``: the unlucky ones set the rare alarms),
    lots joining ``lag`` lots late. A chart with threshold ``h`` alarms within those lots when
    its maximum exceeds ``h`` (until then its path does not depend on ``h``); the chance of
    that is the weights' sum over those charts divided by ``chains``."""
    rng = np.random.default_rng(seed)
    mean, m2, weight = _tilted_reference(n0, chains, rng)
    n = float(n0)  # every chart has as many lots in its estimates
    up, down, top = np.zeros(chains), np.zeros(chains), np.zeros(chains)
    pending = []
    for _ in range(lots):
        x = rng.normal(size=chains)
        u = t_to_normal(t_statistic(x, n, mean, m2), n - 1)
        up, down = np.maximum(up + u - k, 0.0), np.maximum(down - u - k, 0.0)
        top = np.maximum(top, np.maximum(up, down))
        pending.append(x)
        if len(pending) > lag:
            n, mean, m2 = welford_add(n, mean, m2, pending.pop(0), True)
    return top, weight


@functools.lru_cache(maxsize=64)
def lagged_threshold(n0: int, k: float, arl: float, lag: int, seed: int = 0, chains: int = 40_000) -> float:
    """Threshold of the self-starting chart (slack ``k``, ``n0`` reference lots) whose lots
    join the estimates ``lag`` lots late: the one whose chance of an alarm within the first
    ``arl / 20`` lots (10 to 100) on normal lot means is that of the chart without lag at
    Siegmund's threshold for the one-sided ARL ``arl`` (in lots; ``exact_alarm_chance``),
    from ``chains`` charts weighted by ``null_maxima`` (about 0.2 s; at 133,333 lots the
    threshold's sd over seeds is 0.16). Lag 0: Siegmund's threshold.

    >>> round(lagged_threshold(20, 0.5, 3333.0, 20), 1), round(lagged_threshold(20, 0.5, 3333.0, 0), 2)
    (8.3, 6.26)
    """
    exact = siegmund_h(k, arl)
    if lag <= 0:
        return exact
    lots = int(np.clip(arl / 20, 10, 100))
    target = exact_alarm_chance(k, exact, lots)
    top, weight = null_maxima(n0, k, lag, lots, chains, seed)
    order = np.argsort(-top)
    chance = np.cumsum(weight[order]) / chains  # of an alarm at a threshold just under each maximum
    return float(top[order][min(np.searchsorted(chance, target), chains - 1)])


class SelfStartingChart:
    """Self-starting two-sided CUSUM charts of ``d`` features, started from ``reference``
    (n0 x d observations, NaN = missing); an observation joins the running estimates ``lag``
    observations after it is charted. One bank of charts per slack in ``k`` (a number or a
    ladder, in the reference's sds), each at the per-chart in-control ARL ``arl`` in
    observations (one per slack, each a number or one per feature; inf leaves that chart
    off, as do fewer than ``MIN_REFERENCE`` reference values). ``thresholds``: per bank, as
    an earlier chart of the same arguments simulated them (``thresholds``), so a restored
    chart does not simulate them again; one array (a chart saved with one bank) keeps only
    the first slack. ``relax``: as a feature's estimates grow, its thresholds come down to
    those simulated for a fresh chart with a longer reference (``SETTLED``; the estimates'
    error, which the lag lets consecutive ``U`` share, has shrunk), so a step long after the
    reference is not held to the threshold of its first lots."""

    def __init__(self, reference, k, arl, lag: int = 20, thresholds=None, relax: bool = True):
        ref = np.asarray(reference, dtype=float)
        d = ref.shape[1]
        self.lag = int(lag)
        self.n = (~np.isnan(ref)).sum(axis=0).astype(float)
        self.mean = np.nansum(ref, axis=0) / np.maximum(self.n, 1)
        self.m2 = np.nansum((ref - self.mean) ** 2, axis=0)
        sd = np.sqrt(self.m2 / np.maximum(self.n - 1, 1))
        # the charts see U times the reference's sd, so alarms carry shifts in data units
        self.scale = np.where(sd > 0, sd, 1.0)
        self.slacks = np.atleast_1d(np.asarray(k, dtype=float)).tolist()
        self.arls = [np.broadcast_to(np.asarray(a, dtype=float), (d,)) for a in ([arl] if np.ndim(k) == 0 else arl)]
        self.relax = relax and self.lag > 0
        self.simulated_for = self.n.copy()  # per feature: the estimates' size its thresholds were simulated for
        if thresholds is None:
            thresholds = [self._thresholds(s, a) for s, a in zip(self.slacks, self.arls)]
        elif np.ndim(thresholds) == 1:  # saved with one bank
            thresholds = [thresholds]
        self.banks = [CusumBank(np.zeros(d), self.scale, s, np.array(h, dtype=float))
                      for s, h in zip(self.slacks, thresholds)]
        self.pending = np.empty((0, d))  # charted observations not yet in the estimates, oldest first

    @property
    def thresholds(self) -> list[np.ndarray]:
        """Per bank (slack), the per-feature thresholds (inf: off)."""
        return [b.h for b in self.banks]

    def _thresholds(self, k: float, arl: np.ndarray, n: np.ndarray | None = None) -> np.ndarray:
        """Per feature, the threshold of slack ``k`` at its ``arl`` for estimates of ``n``
        observations (default: the reference's; one simulation per distinct count and ARL)."""
        keys = list(zip((self.n if n is None else n).astype(int).tolist(), arl.tolist()))
        h = {(n0, a): lagged_threshold(n0, k, a, self.lag) if n0 >= MIN_REFERENCE and np.isfinite(a) else np.inf
             for n0, a in set(keys)}
        return np.array([h[key] for key in keys])

    def _relax(self) -> None:
        """Give each feature whose estimates hold ``SETTLED`` times twice as many observations
        as its thresholds were simulated for the thresholds of a fresh chart with that many
        times fewer (the largest power-of-two multiple of the former size: a feature's
        thresholds are simulated a few times in its life, each simulation cached)."""
        ratio = self.n / SETTLED / np.maximum(self.simulated_for, 1)
        grown = (ratio >= 2) & (self.simulated_for >= MIN_REFERENCE)
        if not grown.any():
            return
        n = self.simulated_for * 2.0 ** np.floor(np.log2(np.maximum(ratio, 1)))
        for bank, k, arl in zip(self.banks, self.slacks, self.arls):
            h = bank.h.copy()  # a new array: calibrations keep copies of the first thresholds
            h[grown] = np.minimum(h[grown], self._thresholds(k, arl[grown], n[grown]))
            bank.h = h
        self.simulated_for = np.where(grown, n, self.simulated_for)

    def update(self, values, positions, signals=None, stratum=None, detectors=()) -> list:
        """Chart the observations ``values`` (t x d, stream order, NaN = missing) at stream
        ``positions``. Returns, per bank, ``signals([bank], values, valid, positions,
        stratum, detector)`` (the monitor's; ``detectors``: one name per bank) or, without
        it, the alarms."""
        if not len(values):
            return []
        if self.relax:
            self._relax()
        u = np.vstack([self._standardize(x) for x in np.asarray(values, dtype=float)])
        valid = ~np.isnan(u)
        scaled = u * self.scale
        if signals is None:
            return sorted((a for b in self.banks for a in b.update(scaled, valid, positions)),
                          key=lambda a: a.position)
        return [s for name, bank in zip(detectors, self.banks)
                for s in signals([bank], scaled, valid, positions, stratum, name)]

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        """One observation's ``U`` per feature (NaN where it or the earlier ones lack a
        value); the one charted ``lag`` observations earlier joins the running mean and sd."""
        n, ok = self.n, ~np.isnan(x) & (self.n >= 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = self_starting_u(x, n, self.mean, self.m2)
        u = np.where(ok, np.clip(np.nan_to_num(u, nan=0.0), -_U_MAX, _U_MAX), np.nan)
        self.pending = np.vstack([self.pending, x])
        if len(self.pending) > self.lag:
            joining, self.pending = self.pending[0], self.pending[1:]
            self.n, self.mean, self.m2 = welford_add(self.n, self.mean, self.m2, joining, ~np.isnan(joining))
        return u

    def state_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "lag": self.lag, "pending": self.pending,
                "simulated_for": self.simulated_for, "banks": [b.state_dict() for b in self.banks]}

    def load_state(self, s: dict) -> None:
        """Resume from ``state_dict()`` (a state saved before observations joined late
        resumes without lag, at the threshold it was saved with; one saved with one bank,
        with it)."""
        self.n, self.mean, self.m2 = (np.array(s[k], dtype=float) for k in ("n", "mean", "m2"))
        self.lag = int(s.get("lag", 0))
        self.pending = np.array(s.get("pending", ()), dtype=float).reshape(-1, len(self.n))
        self.banks = [CusumBank.from_state(b) for b in s.get("banks", [s.get("bank")])]
        self.simulated_for = np.array(s.get("simulated_for", self.n), dtype=float)
