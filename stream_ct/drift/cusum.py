"""Two-sided CUSUM charts on standardized (subgroup) means, vectorized over rows and features.

Within a batch the Lindley recursion ``S_t = max(0, S_{t-1} + y_t)`` is evaluated in closed
form, ``S_t = C_t - min(-S_0, min_{s<=t} C_s)`` with ``C`` the cumulative sum of ``y``, so a
batch costs a few numpy passes; only a chart that crosses its threshold (rare) is re-run
from its reset point. With ``subgroup=m > 1`` consecutive records are averaged in groups of
``m`` (rational subgroups; a partial group waits for the next batch) and ``sigma`` is the
standard deviation of such a subgroup mean, wafer-to-wafer variation included.

>>> import numpy as np
>>> bank = CusumBank(mean=np.zeros(2), sigma=np.ones(2), k=0.5, h=np.full(2, 5.0))
>>> X = np.zeros((40, 2)); X[10:, 1] = 1.5
>>> [(a.position, a.feature, a.side) for a in bank.update(X, np.ones_like(X, bool), np.arange(40))]
[(15, 1, 1), (21, 1, 1), (27, 1, 1), (33, 1, 1), (39, 1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def lindley(y: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """CUSUM path ``S_t = max(0, S_{t-1} + y_t)`` for every column of ``y``, from ``s0``."""
    return lindley_from_sums(np.cumsum(y, axis=0), s0)


def lindley_from_sums(c: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """The same path from the cumulative sums ``c`` of the increments."""
    return c - np.minimum(np.minimum.accumulate(c, axis=0), -s0)


#: Rows per block of the bound that spares quiet charts their exact path.
BLOCK = 16


def _quiet_charts(csum: np.ndarray, s0: np.ndarray, h: np.ndarray):
    """Charts whose path may cross ``h`` (they need the exact path), and every chart's end
    state and the row of its last restart (-1: none in this batch), valid where it does not cross.

    From the extremes of blocks of ``BLOCK`` rows: a path ``C_t - min(-S_0, min_{s<=t} C_s)``
    stays below ``max_j (max C in block j - min(-S_0, min C in blocks <= j))``.
    """
    t, n = csum.shape
    whole = t // BLOCK * BLOCK
    blocks = csum[:whole].reshape(-1, BLOCK, n)
    bmax, bmin = blocks.max(axis=1), blocks.min(axis=1)
    if whole < t:
        bmax = np.vstack([bmax, csum[whole:].max(axis=0)])
        bmin = np.vstack([bmin, csum[whole:].min(axis=0)])
    floor = np.minimum(np.minimum.accumulate(bmin, axis=0), -s0)
    exact = np.flatnonzero((bmax - floor).max(axis=0) > h)
    lowest = bmin.min(axis=0)
    state = csum[-1] - np.minimum(lowest, -s0)
    # a chart restarts where its cumulative sum reaches a new low at or below -S_0: the last
    # row holding the column minimum, looked up inside the last block that holds it
    cols = np.arange(n)
    block = bmin.shape[0] - 1 - np.argmin(bmin[::-1], axis=0)
    rows = np.minimum(block * BLOCK + np.arange(BLOCK)[:, None], t - 1)
    low = rows[BLOCK - 1 - np.argmin(csum[rows, cols][::-1], axis=0), cols]
    return exact, state, np.where(lowest <= -s0, low, -1)


def _subgroup_means(groups: np.ndarray, has_nan: bool) -> np.ndarray:
    """Means over axis 1 of ``groups`` (subgroups x m x d), NaN ignored when ``has_nan``
    (NaN where a subgroup has no value)."""
    if not has_nan:
        return groups.sum(axis=1) / groups.shape[1]
    ok = ~np.isnan(groups)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(ok, groups, 0.0).sum(axis=1) / count, np.nan)


@dataclass(frozen=True)
class Alarm:
    position: int
    feature: int
    side: int  # +1 upward shift, -1 downward
    statistic: float
    shift: float  # estimated shift of the subgroup mean, in subgroup sigmas (k + S/N)


class CusumBank:
    """``2d`` one-sided charts (up and down per feature) with slack ``k`` and thresholds ``h``."""

    def __init__(self, mean, sigma, k: float, h, subgroup: int = 1):
        self.mean = np.asarray(mean, dtype=float)
        self.sigma = np.asarray(sigma, dtype=float)
        self.k = float(k)
        self.h = np.asarray(h, dtype=float)
        self.subgroup = int(subgroup)
        d = self.mean.shape[0]
        self.state = np.zeros((2, d))  # [upper, lower]
        self.run = np.zeros((2, d), dtype=np.int64)  # increments since each chart was last 0
        self.pending = np.empty((0, d))  # records of an unfinished subgroup (NaN = missing)
        self.pending_pos = np.empty(0, dtype=np.int64)

    def increments(self, X, valid, positions):
        """Standardized subgroup means ``z`` (NaN where no valid value) and their end positions;
        ``valid`` ``None``: every value of ``X`` is a measurement."""
        complete = valid is None or valid.all()
        if not complete:
            X = np.where(valid, X, np.nan)
        if self.subgroup == 1:
            return (X - self.mean) / self.sigma, positions
        m, means, ends = self.subgroup, [], []
        if len(self.pending):  # first the subgroup left unfinished by the last batch
            take = min(m - len(self.pending), len(X))
            head = np.vstack([self.pending, X[:take]])
            head_pos = np.concatenate([self.pending_pos, positions[:take]])
            X, positions = X[take:], positions[take:]
            if len(head) < m:
                self.pending, self.pending_pos = head, head_pos
                return np.empty((0, X.shape[1])), positions[:0]
            means.append(_subgroup_means(head[None], np.isnan(head).any()))
            ends.append(head_pos[-1:])
        n_full = len(X) // m * m
        means.append(_subgroup_means(X[:n_full].reshape(-1, m, X.shape[1]), not complete))
        ends.append(positions[m - 1:n_full:m])
        self.pending, self.pending_pos = X[n_full:].copy(), positions[n_full:].copy()
        return (np.concatenate(means) - self.mean) / self.sigma, np.concatenate(ends)

    def update(self, X: np.ndarray, valid: np.ndarray | None, positions: np.ndarray) -> list[Alarm]:
        """Consume rows of ``X`` (stream ``positions``) and return the alarms, charts reset.
        ``valid`` marks the measurements (``None``: every value is one).

        Charts are columns ``side * d + feature`` of the cumulative increment sums ``C``. A
        chart's path ``S_t = C_t - min(-S_0, min_{s<=t} C_s)`` can only cross ``h`` where the
        bound from blocks of ``BLOCK`` rows, ``max_j (max C in block j - min(-S_0, min C in
        blocks <= j))``, exceeds it; only those charts get the exact path (in control: few).
        """
        if not np.isfinite(self.h).any():  # every chart off (h = inf): none can alarm, nothing to compute
            return []
        z, pos = self.increments(X, valid, np.asarray(positions, dtype=np.int64))
        t = z.shape[0]
        if t == 0:
            return []
        d = z.shape[1]
        # the upper (z - k) and lower (-z - k) increments' cumulative sums from one cumsum of
        # z; a missing increment adds 0 to both, so k counts only the valid steps
        missing = np.isnan(z)
        if missing.any():
            z = np.where(missing, 0.0, z)
            measured = np.cumsum(~missing, axis=0)  # measured increments up to each row
        else:
            measured = np.arange(1, t + 1)[:, None]
        steps = measured * self.k
        cz = np.cumsum(z, axis=0)
        csum = np.empty((t, 2 * d))
        np.subtract(cz, steps, out=csum[:, :d])
        np.negative(cz, out=csum[:, d:])
        csum[:, d:] -= steps
        s0 = self.state.ravel()
        h = np.concatenate([self.h, self.h])
        run = self.run.ravel()
        if t > 2 * BLOCK:
            exact, state, restart = _quiet_charts(csum, s0, h)
        else:  # a few increments: every chart exact
            exact, state, restart = np.arange(2 * d), np.empty(2 * d), np.empty(2 * d, dtype=np.int64)
        counts = np.broadcast_to(measured, (t, d))
        alarms = []
        if exact.size:
            every = exact.size == 2 * d  # no column copy
            path = lindley_from_sums(csum if every else csum[:, exact], s0 if every else s0[exact])
            for i in np.flatnonzero(path.max(axis=0) > h[exact]).tolist():
                c = int(exact[i])  # restarts the chart at 0 after each crossing, in place
                alarms += self._resets(np.diff(csum[:, c], prepend=0.0), path[:, i], h[c], run[c],
                                       counts[:, c % d], c, d, pos)
            zero = path <= 0
            state[exact] = path[-1]
            restart[exact] = np.where(zero.any(axis=0), t - 1 - np.argmax(zero[::-1], axis=0), -1)
        features = np.tile(np.arange(d), 2)
        since = counts[-1, features] - counts[np.maximum(restart, 0), features]
        self.run = np.where(restart >= 0, since, run + counts[-1, features]).reshape(2, d)
        self.state = state.reshape(2, d)
        return sorted(alarms, key=lambda a: (a.position, a.feature))

    def _resets(self, y, col, h, run, measured, c, d, pos):
        """Alarm at each crossing of chart ``c`` (``side * d + feature``), restarting it at 0;
        ``measured`` counts the feature's measured increments up to each row."""
        side, j = divmod(int(c), d)
        out = []
        t = int(np.argmax(col > h))
        while True:
            zeros = np.flatnonzero(col[:t] <= 0)
            n = measured[t] - measured[zeros[-1]] if zeros.size else measured[t] + run
            out.append(Alarm(int(pos[t]), j, 1 - 2 * side, float(col[t]),
                             float((self.k + col[t] / n) * (1 - 2 * side))))
            col[t] = 0.0
            col[t + 1:] = lindley(y[t + 1:, None], np.zeros(1))[:, 0]
            later = np.flatnonzero(col[t + 1:] > h)
            if not later.size:
                return out
            t = t + 1 + int(later[0])

    def state_dict(self) -> dict:
        return {"mean": self.mean, "sigma": self.sigma, "k": self.k, "h": self.h,
                "subgroup": self.subgroup, "state": self.state, "run": self.run,
                "pending": self.pending, "pending_pos": self.pending_pos}

    @classmethod
    def from_state(cls, s: dict) -> "CusumBank":
        bank = cls(s["mean"], s["sigma"], s["k"], s["h"], s["subgroup"])
        bank.state = np.array(s["state"], dtype=float)
        bank.run = np.array(s["run"], dtype=np.int64)
        bank.pending = np.array(s["pending"], dtype=float).reshape(-1, bank.mean.shape[0])
        bank.pending_pos = np.array(s["pending_pos"], dtype=np.int64)
        return bank
