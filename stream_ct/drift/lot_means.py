"""Each whole lot's mean against the earlier lots': a self-starting CUSUM (Hawkins 1987).

On a test floor lot offsets are normal variation, so a persistent shift that starts at a lot
boundary looks like one more lot offset to every chart against the reference mean, and the
charts within wafers and lots never see it. Its unit is the lot. After ``n`` earlier whole
lots whose means of a feature have mean ``m`` and sd ``s`` (the reference's lots, then the
stream's), a new lot's mean ``x`` gives ``T = (x - m) / (s * sqrt(1 + 1/n))``, Student-t with
``n - 1`` degrees of freedom when lot means are normal, however few lots the reference holds;
mapped through its CDF onto the standard normal, the increments ``U`` of successive lots are
independent N(0, 1) (Hawkins, "Self-starting cusum charts for location and scale", 1987). A
two-sided CUSUM on ``U`` with slack ``k`` then gets its exact threshold from Siegmund's
approximation: no bound on the reference's own mean error is needed, as the part-level charts
need one. A lot is whole when it holds at least half the reference's median lot size (pieces
of lots spread over partitions are not lots); it is complete when the first record of the
next lot arrives. Group ids are ``lot/wafer``.

Each whole lot joins ``m`` and ``s`` only ``lag`` whole lots later. Joining at once keeps
``U`` independent, but a persistent shift then becomes part of the mean it is measured
against lot by lot: a shift of 0.83 lot sds after a 20-lot reference leaves the chart
(``k`` 0.5) with a largest expected sum of about 1.7, far below its threshold, and 2 in 3
such shifts go unseen for 50 lots. With a lag consecutive ``U`` share the estimates' error,
so the threshold is simulated (``lagged_threshold``): on normal lot means, the one whose
chance of an alarm in the first lots after the reference equals that of the chart without
lag at Siegmund's exact threshold. With ``lag`` 20 (default) and a per-chart ARL of 3,333
lots (50 tests, ARL0 100,000 records, 10,000-record lots) that shift goes unseen for 50 lots
in 1 of 3 cases, one of 1.67 lot sds is seen after 9.3 lots instead of 10.6 and one of 3.3
after 4.2 instead of 4.0 (simulated chart alone, the step right after the reference). Small
lots give larger per-chart ARLs and thresholds further above Siegmund's (17.7 against 9.9 at
133,333 lots from 19 reference lots). The lag is a trade: a step long after the reference,
when the estimates hold many lots and take it in slowly, is found a little later with it
(``docs/drift.md``, Calibration).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> lots = rng.normal(0, 0.3, (20, 2))                           # 20 reference lots, 2 tests
>>> chart = LotMeanChart(lots, lot_records=100, k=0.5, arl0=10_000, share=1.0, lag=0)
>>> X = np.vstack([rng.normal(lots[i % 20], 0.1, (100, 2)) + [0.0, 1.5 * (i >= 3)] for i in range(8)])
>>> groups = np.repeat([f"L{i}/1" for i in range(8)], 100)    # test 1 moves 5 lot sds from lot 3
>>> [(a.position, a.feature, a.side) for a in chart.update(X, groups, np.arange(800))]
[(400, 1, 1), (700, 1, 1)]

Lot 3 is complete when lot 4's first record (400) arrives; the restarted chart fires again
while the shift lasts and before the running mean has taken it in.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special, stats

from stream_ct.drift.calibration import siegmund_h
from stream_ct.drift.cusum import CusumBank
from stream_ct.drift.values import lots_of, mean_or_nan, run_starts

#: Whole lots a reference needs for the chart (Student-t with at least 7 degrees of freedom).
MIN_LOTS = 8

#: |U| cap: a lot far outside every earlier one gives a finite statistic (norm.isf(1e-300) ~ 37).
_U_MAX = 37.0


def lot_runs(groups) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each run of records of one lot starts in ``groups`` (``lot/wafer`` ids, stream
    order) and its lot; None unless every id names a lot.

    >>> lot_runs(np.array(["A/1", "A/1", "A/2", "B/1"]))
    (array([0, 3]), array(['A', 'B'], dtype=object))
    """
    g = np.asarray(groups)
    starts = np.flatnonzero(run_starts(g))
    lots = lots_of(g[starts])
    if lots is None:
        return None
    new = run_starts(lots)
    return starts[new], lots[new]


class LotAccumulator:
    """Sums of the lot in progress; ``update`` returns the lots a batch completed."""

    def __init__(self, d: int):
        self.lot, self.rows = None, 0
        self.sum, self.count = np.zeros(d), np.zeros(d)

    def update(self, X, groups, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per completed lot: its mean per feature (NaN: no value; ``X`` holds NaN where a
        value is missing), its records, and the position of the record that completed it."""
        X = np.asarray(X, dtype=float)
        runs = lot_runs(groups)
        if runs is None:
            raise ValueError("lot means need lot/wafer group ids")
        starts, lots = runs
        means, sizes, ends = [], [], []
        if not len(X):
            return np.empty((0, len(self.sum))), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        valid = ~np.isnan(X)
        sums = np.add.reduceat(np.where(valid, X, 0.0), starts, axis=0)
        counts = np.add.reduceat(valid, starts, axis=0).astype(float)
        rows = np.diff(np.r_[starts, len(X)])
        if self.lot is not None and lots[0] == self.lot:  # the carried lot goes on
            sums[0] += self.sum
            counts[0] += self.count
            rows[0] += self.rows
        elif self.lot is not None:  # the carried lot ended before this batch
            means.append(mean_or_nan(self.sum, self.count))
            sizes.append(self.rows)
            ends.append(positions[0])
        means += list(mean_or_nan(sums[:-1], counts[:-1]))
        sizes += rows[:-1].tolist()
        ends += np.asarray(positions)[starts[1:]].tolist()
        self.lot, self.rows = lots[-1], int(rows[-1])
        self.sum, self.count = sums[-1].copy(), counts[-1].copy()
        return (np.array(means, dtype=float).reshape(-1, len(self.sum)), np.array(sizes, dtype=np.int64),
                np.array(ends, dtype=np.int64))

    def state_dict(self) -> dict:
        return {"lot": self.lot, "rows": self.rows, "sum": self.sum, "count": self.count}

    def load_state(self, s: dict) -> None:
        self.lot, self.rows = s["lot"], int(s["rows"])
        self.sum, self.count = np.array(s["sum"], dtype=float), np.array(s["count"], dtype=float)


def reference_lots(X: np.ndarray, groups, chunk: int = 20_000) -> tuple[np.ndarray, float] | None:
    """The means of the whole lots of a reference (rows ``X``, NaN = missing; ``lot/wafer``
    ``groups``) and its median lot size; None unless the ids name lots and ``MIN_LOTS``
    whole lots are there. The lot still open at the end counts as cut."""
    groups = np.asarray(groups)
    if lot_runs(groups) is None:
        return None
    acc, means, sizes = LotAccumulator(X.shape[1]), [], []
    for a in range(0, len(X), chunk):
        m, s, _ = acc.update(X[a:a + chunk], groups[a:a + chunk], np.arange(a, min(a + chunk, len(X))))
        means.append(m)
        sizes.append(s)
    means, sizes = np.vstack(means), np.concatenate(sizes)
    if not len(sizes):
        return None
    lot_records = float(np.median(sizes))
    whole = means[sizes >= lot_records / 2]
    return (whole, lot_records) if len(whole) >= MIN_LOTS else None


def self_starting_u(x: np.ndarray, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Hawkins' ``U`` of lot means ``x`` against ``n`` earlier lots with mean ``mean`` and sum
    of squared deviations ``m2``: ``T = (x - mean) / (s sqrt(1 + 1/n))``, Student-t with
    ``n - 1`` degrees of freedom, mapped through its CDF onto the standard normal (from the
    tail beyond ``|T|``: no loss of precision far out)."""
    t = (x - mean) / np.sqrt(m2 / (n - 1) * (1 + 1 / n))
    return -np.sign(t) * special.ndtri(special.stdtr(np.maximum(n - 1, 1), -np.abs(t)))


def welford_add(n, mean, m2, x, seen):
    """``(n, mean, m2)`` with the lot means ``x`` added where ``seen`` (Welford)."""
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


def null_maxima(n0: int, k: float, lag: int, lots: int, chains: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest two-sided CUSUM value (slack ``k``) of each of ``chains`` simulated charts over
    their first ``lots`` lots, and each chart's importance weight: normal lot means, ``n0``
    reference lots (drawn by ``_tilted_reference``: the unlucky ones set the rare alarms),
    lots joining ``lag`` lots late. A chart with threshold ``h`` alarms within those lots when
    its maximum exceeds ``h`` (until then its path does not depend on ``h``); the chance of
    that is the weights' sum over those charts divided by ``chains``."""
    rng = np.random.default_rng(seed)
    mean, m2, weight = _tilted_reference(n0, chains, rng)
    n = np.full(chains, float(n0))
    up, down, top = np.zeros(chains), np.zeros(chains), np.zeros(chains)
    pending = []
    for _ in range(lots):
        x = rng.normal(size=chains)
        u = self_starting_u(x, n, mean, m2)
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
    from ``chains`` charts weighted by ``null_maxima`` (about 1 s; at 133,333 lots the
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


class LotMeanChart:
    """Self-starting two-sided CUSUM charts on whole lots' means, started from the
    ``reference_means`` (lots x d) of lots of ``lot_records`` records; a lot joins the running
    estimates ``lag`` whole lots after it is charted. One bank of charts per slack in ``k``
    (a number or a ladder, in lot sds), each at a per-record false-alarm rate ``share / arl0``
    spread over all features and both sides (``share``: one per slack, each a number or one
    per feature; 0 leaves that feature's chart of that slack off). ``thresholds``: the
    per-bank, per-feature thresholds an earlier chart of the same arguments simulated
    (``thresholds`` attribute), so a restored chart does not simulate them again; one array
    (a chart saved with one bank) keeps only the first slack."""

    def __init__(self, reference_means, lot_records: float, k, arl0: float, share,
                 lag: int = 20, thresholds=None):
        ref = np.asarray(reference_means, dtype=float)
        d = ref.shape[1]
        self.lot_records, self.lag = float(lot_records), int(lag)
        self.n = (~np.isnan(ref)).sum(axis=0).astype(float)
        self.mean = np.nanmean(ref, axis=0)
        self.m2 = np.nansum((ref - self.mean) ** 2, axis=0)
        sd = np.sqrt(self.m2 / np.maximum(self.n - 1, 1))
        # the charts see U times the reference's lot sd, so alarms carry shifts in data units
        self.scale = np.where(sd > 0, sd, 1.0)
        slacks = np.atleast_1d(np.asarray(k, dtype=float))
        shares = [share] if np.ndim(k) == 0 else list(share)
        if thresholds is None:
            thresholds = [self._thresholds(float(s), f, arl0) for s, f in zip(slacks, shares)]
        elif np.ndim(thresholds) == 1:  # saved with one bank
            thresholds = [thresholds]
        self.banks = [CusumBank(np.zeros(d), self.scale, s, np.array(h, dtype=float))
                      for s, h in zip(slacks, thresholds)]
        self.pending = np.empty((0, d))  # charted lots not yet in the estimates, oldest first
        self.lots = LotAccumulator(d)

    @property
    def detectors(self) -> list[str]:
        """Each bank's detector name: ``"cusum_lot_mean"``, then ``"cusum_lot_mean_large"``."""
        return ["cusum_lot_mean", "cusum_lot_mean_large"][:len(self.banks)]

    @property
    def thresholds(self) -> list[np.ndarray]:
        """Per bank (slack), the per-feature thresholds (inf: off)."""
        return [b.h for b in self.banks]

    def _thresholds(self, k: float, share, arl0: float) -> np.ndarray:
        """Per feature, the threshold of slack ``k`` at its ``share`` (one simulation per
        distinct reference lot count and share)."""
        shares = np.broadcast_to(np.asarray(share, dtype=float), self.n.shape)
        h = {}
        for n0, s in set(zip(self.n.astype(int).tolist(), shares.tolist())):
            arl = arl0 * 2 * len(self.n) / (s * self.lot_records) if s > 0 else np.inf  # in lots, per chart
            h[n0, s] = lagged_threshold(n0, k, float(arl), self.lag) if s > 0 else np.inf
        return np.array([h[key] for key in zip(self.n.astype(int).tolist(), shares.tolist())])

    def update(self, X, groups, positions, signals=None) -> list:
        """Consume records (``X`` with NaN where missing, ``lot/wafer`` ``groups``, stream
        ``positions``); chart every whole lot they complete. Returns ``signals(banks, values,
        valid, positions, stratum, detector)`` (the monitor's) per bank, or without it the alarms."""
        means, sizes, ends = self.lots.update(X, groups, positions)
        whole = sizes >= self.lot_records / 2
        means, ends = means[whole], ends[whole]
        if not len(means):
            return []
        u = np.vstack([self._standardize(m) for m in means])
        valid = ~np.isnan(u)
        values = u * self.scale
        if signals is None:
            return sorted((a for b in self.banks for a in b.update(values, valid, ends)), key=lambda a: a.position)
        return [s for name, bank in zip(self.detectors, self.banks)
                for s in signals([bank], values, valid, ends, None, name)]

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        """One lot's ``U`` per feature (NaN where it or the earlier lots lack a value); the lot
        charted ``lag`` lots earlier joins the running mean and sd."""
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
                "banks": [b.state_dict() for b in self.banks], "lots": self.lots.state_dict()}

    def load_state(self, s: dict) -> None:
        """Resume from ``state_dict()`` (a state saved before lots joined late resumes
        without lag, at the threshold it was saved with; one saved with one bank, with it)."""
        self.n, self.mean, self.m2 = (np.array(s[k], dtype=float) for k in ("n", "mean", "m2"))
        self.lag = int(s.get("lag", 0))
        self.pending = np.array(s.get("pending", ()), dtype=float).reshape(-1, len(self.n))
        self.banks = [CusumBank.from_state(b) for b in s.get("banks", [s.get("bank")])]
        self.lots.load_state(s["lots"])

