"""Wafer-map patterns: each die position's mean offset per test, learned on the reference.

Many parametric tests vary with the die's place on the wafer (edge and radial patterns).
Parts arrive in wafer order, so a pattern makes neighbouring records alike: partial sums of
a patterned test wander 2-3x more than independent values would, and a mean-shift chart on
it needs a threshold that much higher. Subtracting each die position's offset removes that
wander; what is left of a test behaves like independent parts within a wafer again.

Offsets are the reference mean at each die minus the overall mean, shrunk toward zero by
the share of their spread that sampling explains (empirical Bayes: a test without a pattern
gets offsets near zero, a die seen rarely is trusted less), weighted to average zero over
the reference. Die ids are opaque (any values ``np.unique`` can sort); a die not in the
reference gets no offset.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> die = np.tile(np.arange(100), 200)                       # 200 wafers of 100 dies
>>> edge = np.where(die >= 80, 1.5, 0.0)                     # the outer dies read high
>>> ref = np.c_[rng.normal(size=20_000) + edge, rng.normal(size=20_000)]
>>> pattern = DiePattern(ref, die)
>>> off = pattern.offsets(np.arange(100))
>>> [round(float(v), 1) for v in (off[:80, 0].mean(), off[80:, 0].mean(), abs(off[:, 1]).max())]
[-0.3, 1.2, 0.0]
>>> pattern.offsets(np.array([555])).tolist()                # a die the reference never had
[[0.0, 0.0]]
>>> [round(float(v.std()), 2) for v in (ref[:, 0], pattern.remove(ref, die)[:, 0])]
[1.17, 0.99]
"""

from __future__ import annotations

import numpy as np

from stream_ct.drift.values import group_sums, valid_mask


class DiePattern:
    """Per-die offsets of every column of ``reference`` (n x d, NaN = missing), die ids
    ``dies`` (length n) per row."""

    def __init__(self, reference: np.ndarray, dies):
        x = np.asarray(reference, dtype=float)
        dies = np.asarray(dies)
        if dies.shape != (x.shape[0],):
            raise ValueError("reference_dies needs one die id per reference row")
        ok = valid_mask(x)
        self.ids, inverse = np.unique(dies, return_inverse=True)
        k = len(self.ids)
        sums, n = group_sums(x, inverse, k)  # (k x d)
        total = n.sum(axis=0)
        grand = sums.sum(axis=0) / np.maximum(total, 1)
        die_mean = np.where(n > 0, sums / np.maximum(n, 1), grand)
        raw = die_mean - grand
        resid = np.where(ok, x - die_mean[inverse], 0.0)
        within = (resid ** 2).sum(axis=0) / np.maximum(total - k, 1)  # variance around die means
        # the n-weighted mean square of the raw offsets; sampling alone gives within * dies / n
        spread = (n * raw ** 2).sum(axis=0) / np.maximum(total, 1)
        noise = within * (n > 0).sum(axis=0) / np.maximum(total, 1)
        between = np.maximum(spread - noise, 0.0)
        scale = between + within / np.maximum(n, 1)  # 0 on a constant column: no pattern to learn
        shrunk = raw * np.divide(between, scale, out=np.zeros_like(scale), where=scale > 0)
        self.offset = shrunk - (n * shrunk).sum(axis=0) / np.maximum(total, 1)  # (k x d)
        self.offset[n == 0] = 0.0

    def offsets(self, dies) -> np.ndarray:
        """(b x d) offsets of the dies ``dies`` (zero for dies the reference never had)."""
        dies = np.asarray(dies)
        i = np.minimum(np.searchsorted(self.ids, dies), len(self.ids) - 1)
        known = self.ids[i] == dies
        return np.where(known[:, None], self.offset[i], 0.0)

    def remove(self, X: np.ndarray, dies) -> np.ndarray:
        """``X`` less each row's die offset (a new array)."""
        return X - self.offsets(dies)
