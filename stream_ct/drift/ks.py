"""Two-sample Kolmogorov-Smirnov, vectorized over features, equal to ``scipy.stats.ks_2samp``.

The reference is sorted once per feature. Each incoming value is turned into an integer key
``left * modulus + right`` where ``left``/``right`` count reference values ``<``/``<=`` it;
keys sort like the values and carry the reference ECDF, so a window's statistic for all
features is one ``np.sort(axis=0)`` of its keys plus elementwise maxima.

>>> import numpy as np, scipy.stats as st
>>> rng = np.random.default_rng(0)
>>> ref, win = rng.normal(size=(500, 3)), rng.normal(0.3, size=(200, 3))
>>> ranks = ReferenceRanks(ref)
>>> d = ks_statistic(ranks, ranks.keys(win))
>>> bool(abs(d[1] - st.ks_2samp(ref[:, 1], win[:, 1]).statistic) < 1e-12)
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.stats import _stats_py

from stream_ct.drift.values import valid_mask

#: Key of a missing/sentinel value: sorts after every real key and is ignored.
INVALID_KEY = np.iinfo(np.int64).max
#: scipy's ``method="auto"`` is exact while both samples have at most this many values.
_MAX_AUTO_N = 10_000


class ReferenceRanks:
    """The reference sample per feature, sorted, with its valid-value count ``n``."""

    def __init__(self, reference: np.ndarray):
        reference = np.asarray(reference, dtype=float)
        valid = valid_mask(reference)
        self.sorted = [np.sort(reference[valid[:, j], j]) for j in range(reference.shape[1])]
        self.n = valid.sum(axis=0).astype(np.int64)
        if (self.n == 0).any():
            raise ValueError("every feature needs at least one valid reference value")
        self.shift = int(self.n.max()).bit_length()  # keys are left << shift | right
        self.modulus = 1 << self.shift
        # run_start[j][i]: index of the first reference value equal to sorted[j][i]
        self.run_start = []
        for ref in self.sorted:
            new = np.ones(len(ref), dtype=bool)
            new[1:] = ref[1:] != ref[:-1]
            self.run_start.append(np.maximum.accumulate(np.where(new, np.arange(len(ref)), 0)))
        # every feature's sorted values end to end, each block after a NaN (equal to nothing):
        # ``right - 1 + base`` is the last reference value <= x, or that NaN when none is
        self.base = np.cumsum(np.r_[0, self.n[:-1] + 1]).astype(np.int64) + 1
        self.flat = np.concatenate([np.r_[np.nan, ref] for ref in self.sorted])
        self.flat_start = np.concatenate([np.r_[0, start] for start in self.run_start])

    def keys(self, X: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Integer ECDF keys of ``X`` (b x d) in its row order; ``INVALID_KEY`` where not a
        measurement (``sorted_keys`` of the sorted columns, put back in place)."""
        X = np.asarray(X, dtype=float)
        if valid is None:
            valid = valid_mask(X)
        masked = np.where(valid, X, np.nan)
        order = np.argsort(masked, axis=0)  # NaN last
        out = np.empty(X.shape, dtype=np.int64)
        np.put_along_axis(out, order, self.sorted_keys(np.take_along_axis(masked, order, axis=0),
                                                       valid.sum(axis=0)), axis=0)
        return out

    def sorted_keys(self, xs: np.ndarray, n_valid: np.ndarray) -> np.ndarray:
        """Keys of a window whose columns are sorted with their ``n_valid`` valid values
        first (``np.sort`` puts NaN last): sorted keys, ``INVALID_KEY`` after them.

        Only the search is per feature; the tie lookups run on all features at once in the
        reference values laid end to end."""
        right = np.empty(xs.shape[::-1], dtype=np.int64)  # feature-major: rows contiguous
        for j, ref in enumerate(self.sorted):
            right[j] = np.searchsorted(ref, xs[:, j], "right")
        below = right + (self.base - 1)[:, None]
        left = np.where(self.flat[below] == xs.T, self.flat_start[below], right)
        out = (left << self.shift) | right
        if (n_valid < xs.shape[0]).any():
            out[np.arange(xs.shape[0])[None, :] >= n_valid[:, None]] = INVALID_KEY
        return out.T


def ks_statistic(ranks: ReferenceRanks, keys: np.ndarray, presorted: bool = False) -> np.ndarray:
    """Per-feature KS distance between the reference and the window given by ``keys``
    (``presorted``: each column already ascending, as ``sorted_keys`` returns them).

    Features without a valid window value get NaN. For the ``i``-th (0-based) value of the
    sorted window two differences suffice: the window's excess at its right limit,
    ``(i + 1)/nw - right/nr``, and the reference's excess at its left limit,
    ``left/nr - i/nw``. Between window values the window ECDF is flat and the reference's
    rises, so the reference's excess anywhere there is at most the next left limit's and the
    window's excess at most the previous right limit's (both 0 or less outside the window's
    range): every point where scipy evaluates is covered. Within a run of tied window values
    the first term peaks at the run's last row and the second at its first, so every row
    may be taken without finding the runs.
    """
    s = keys if presorted else np.sort(keys, axis=0)
    w = s.shape[0]
    n_win = (s != INVALID_KEY).sum(axis=0)
    # in integers, scaled by nr * nw
    left, right = s >> ranks.shift, s & (ranks.modulus - 1)
    nr, nw = ranks.n, np.maximum(n_win, 1)
    idx = np.arange(w, dtype=np.int64)[:, None]
    window_excess = (idx + 1) * nr - right * nw
    reference_excess = left * nw - idx * nr
    if (n_win < w).any():  # INVALID_KEY rows (last in each column) take no part
        invalid = idx >= n_win
        window_excess[invalid] = 0
        reference_excess[invalid] = 0
    d = np.maximum(np.maximum(window_excess.max(axis=0), reference_excess.max(axis=0)), 0)
    return np.where(n_win > 0, d / (nr * nw).astype(float), np.nan)


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """Two-sided p-value as ``ks_2samp(method="auto")`` computes it for statistic ``d``."""
    n1, n2 = int(n1), int(n2)
    if max(n1, n2) <= _MAX_AUTO_N:
        ok, _, prob = _stats_py._attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
        if ok:
            return float(np.clip(prob, 0, 1))
    en = n1 * n2 / (n1 + n2)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))

