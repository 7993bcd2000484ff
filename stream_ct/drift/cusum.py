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
        """Standardized subgroup means ``z`` (NaN where no valid value) and their end positions."""
        complete = valid.all()
        if self.subgroup == 1:
            z = (X - self.mean) / self.sigma
            return (z if complete else np.where(valid, z, np.nan)), positions
        if len(self.pending) or not complete:
            X = np.vstack([self.pending, X if complete else np.where(valid, X, np.nan)])
            positions = np.concatenate([self.pending_pos, positions])
        n_full = X.shape[0] // self.subgroup * self.subgroup
        self.pending, self.pending_pos = X[n_full:], positions[n_full:]
        groups = X[:n_full].reshape(-1, self.subgroup, X.shape[1])
        if complete and not np.isnan(groups).any():
            z = (groups.mean(axis=1) - self.mean) / self.sigma
        else:
            ok = ~np.isnan(groups)
            count = ok.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(ok, groups, 0.0).sum(axis=1) / count
            z = np.where(count > 0, (means - self.mean) / self.sigma, np.nan)
        return z, positions[self.subgroup - 1:n_full:self.subgroup]

    def update(self, X: np.ndarray, valid: np.ndarray, positions: np.ndarray) -> list[Alarm]:
        """Consume rows of ``X`` (stream ``positions``) and return the alarms, charts reset."""
        z, pos = self.increments(X, valid, np.asarray(positions, dtype=np.int64))
        t = z.shape[0]
        if t == 0:
            return []
        d = z.shape[1]
        y = np.empty((t, 2 * d))  # upper | lower charts
        np.subtract(z, self.k, out=y[:, :d])
        np.subtract(-self.k, z, out=y[:, d:])
        missing = np.isnan(y)
        if missing.any():
            y[missing] = 0.0
        s0 = self.state.ravel()
        csum = np.cumsum(y, axis=0)
        path = lindley_from_sums(csum, s0)
        h = np.concatenate([self.h, self.h])
        run = self.run.ravel()
        # a chart is 0 where its cumulative sum reaches a new low (at or below -S_0); the last
        # such row is the last row holding the column minimum
        low = t - 1 - np.argmin(csum[::-1], axis=0)
        hit = csum[low, np.arange(2 * d)] <= -s0
        new_run = np.where(hit, t - 1 - low, run + t)
        alarms = []
        for c in np.flatnonzero(path.max(axis=0) > h):
            alarms += self._resets(y[:, c], path[:, c], h[c], run[c], c, d, pos)
            zeros = np.flatnonzero(path[:, c] <= 0)  # the chart restarted at each alarm
            new_run[c] = t - 1 - zeros[-1] if zeros.size else run[c] + t
        self.run = new_run.reshape(2, d)
        self.state = path[-1].reshape(2, d)
        return sorted(alarms, key=lambda a: (a.position, a.feature))

    def _resets(self, y, col, h, run, c, d, pos):
        """Alarm at each crossing of chart ``c`` (``side * d + feature``), restarting it at 0."""
        side, j = divmod(int(c), d)
        out = []
        t = int(np.argmax(col > h))
        while True:
            zeros = np.flatnonzero(col[:t] <= 0)
            n = t - zeros[-1] if zeros.size else t + 1 + run
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
