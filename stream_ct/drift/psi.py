"""Population Stability Index per feature with bins from reference quantiles.

Bins are right-closed: ``(-inf, e1], (e1, e2], ..., (e_last, +inf)``. The edges are reference
values at the quantiles ``1/B, ..., (B-1)/B`` (``method="lower"``), duplicates merged, and an
edge equal to the reference maximum replaced by the largest value below it (or dropped), so
every bin holds at least one reference value
however heavily the data are tied; the outer bins are open-ended and take values outside the
reference range. Empty window bins are smoothed additively: each bin gets ``smoothing``
(default 0.5) pseudo-counts in both distributions before proportions are taken.
NaN and sentinel values are excluded and counted by the caller.

>>> import numpy as np
>>> bins = PsiBins(np.array([[0.0], [1.0], [2.0], [3.0]]), n_bins=2)
>>> bins.edges.tolist(), bins.n_bins.tolist()
([[1.0]], [2])
>>> bins.ref_counts.tolist()
[[2, 2]]
>>> # window (0, 4) -> (0.1, 0.9) after smoothing, reference (0.5, 0.5)
>>> round(float(psi(bins.ref_counts, np.array([[0, 4]]), smoothing=0.5)[0]), 6)
0.87889
"""

from __future__ import annotations

import numpy as np

from stream_ct.drift.values import valid_mask


class PsiBins:
    """Reference bins: ``edges`` (d x max_edges, +inf padded), ``n_bins`` and ``ref_counts``."""

    def __init__(self, reference: np.ndarray, n_bins: int = 10):
        reference = np.asarray(reference, dtype=float)
        valid = valid_mask(reference)
        d = reference.shape[1]
        q = np.arange(1, n_bins) / n_bins
        per_feature = []
        for j in range(d):
            col = reference[valid[:, j], j]
            e = np.unique(np.quantile(col, q, method="lower"))
            top = col.max()
            if (e == top).any() and (col < top).any():  # keep a cut below a tied maximum
                e = np.unique(np.append(e[e < top], col[col < top].max()))
            per_feature.append(e[e < top])
        width = max(1, max(len(e) for e in per_feature))
        self.edges = np.full((d, width), np.inf)
        for j, e in enumerate(per_feature):
            self.edges[j, : len(e)] = e
        self.n_bins = np.array([len(e) + 1 for e in per_feature])
        self.ref_counts = self.counts(reference, valid)
        self._edge_left = None  # set by counts_from_keys

    def bin_index(self, X: np.ndarray) -> np.ndarray:
        """Bin of each value (b x d): the number of edges strictly below it."""
        out = np.empty(X.shape, dtype=np.int64)
        for j, k in enumerate(self.n_bins):
            out[:, j] = np.searchsorted(self.edges[j, : k - 1], X[:, j], "left")
        return out

    def counts(self, X: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Per-feature bin counts (d x max_bins) of the valid values of ``X``."""
        X = np.asarray(X, dtype=float)
        if valid is None:
            valid = valid_mask(X)
        return self.counts_of_bins(self.bin_index(np.where(valid, X, 0.0)), valid)

    def counts_from_keys(self, ranks, keys: np.ndarray, n_valid: np.ndarray) -> np.ndarray:
        """Per-feature counts of a window from its sorted KS keys (``ReferenceRanks.sorted_keys``
        of the sample these bins were built on), in one search for all features.

        Every edge ``e`` is a reference value, so ``x <= e`` exactly when fewer reference
        values lie below ``x`` than below ``e`` or as many: ``left(x) <= left(e)``.
        """
        d, width = self.edges.shape
        if self._edge_left is None:  # reference values below each edge, once
            self._edge_left = np.full((d, width), ranks.modulus, dtype=np.int64)  # padding: past all
            for j, k in enumerate(self.n_bins.tolist()):
                self._edge_left[j, : k - 1] = np.searchsorted(ranks.sorted[j], self.edges[j, : k - 1], "left")
        span = ranks.modulus + 1
        offsets = np.arange(d, dtype=np.int64) * span
        left = np.minimum(keys >> ranks.shift, ranks.modulus)  # INVALID_KEY -> past every edge
        flat = (left + offsets).T.ravel()  # sorted: feature blocks in order, each ascending
        at_most = np.searchsorted(flat, (self._edge_left + offsets[:, None]).ravel(), "right").reshape(d, width)
        at_most -= (np.arange(d) * keys.shape[0])[:, None]
        at_most = np.minimum(at_most, n_valid[:, None])
        return np.diff(at_most, axis=1, prepend=0, append=n_valid[:, None])

    def histogram(self, j: int, values: np.ndarray, reference: np.ndarray | None = None) -> dict:
        """Feature ``j``'s bins with the reference's counts and those of ``values`` (its valid
        values; NaN and sentinels skipped), JSON-ready for a drift event: ``edges`` has one
        entry more than the counts, ``None`` at both ends (the outer bins are open).
        ``reference`` (feature ``j``'s values of a part of the reference, e.g. one tester's)
        is counted in place of the whole reference.

        >>> bins = PsiBins(np.array([[0.0], [1.0], [2.0], [3.0]]), n_bins=2)
        >>> bins.histogram(0, np.array([-5.0, 0.5, 1.0, 2.0, 7.0, np.nan, 9.9e37]))
        {'edges': [None, 1.0, None], 'reference': [2, 2], 'current': [3, 2]}
        >>> bins.histogram(0, np.array([0.5]), reference=np.array([2.0, 3.0]))["reference"]
        [0, 2]
        """
        inner = self.edges[j, : self.n_bins[j] - 1]

        def counts(v):
            v = np.asarray(v, dtype=float)
            return np.bincount(np.searchsorted(inner, v[valid_mask(v)], "left"), minlength=len(inner) + 1).tolist()

        return {"edges": [None, *inner.tolist(), None],
                "reference": self.ref_counts[j, : len(inner) + 1].tolist() if reference is None else counts(reference),
                "current": counts(values)}

    def counts_of_bins(self, bins: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Per-feature counts from precomputed bin indices; invalid entries are skipped."""
        d, width = self.edges.shape[0], self.edges.shape[1] + 1
        flat = (bins + np.arange(d)[None, :] * width)[valid]
        return np.bincount(flat, minlength=d * width).reshape(d, width)


def psi(ref_counts: np.ndarray, win_counts: np.ndarray, smoothing: float = 0.5,
        n_bins: np.ndarray | None = None) -> np.ndarray:
    """PSI per feature: sum over bins of ``(p_w - p_r) * ln(p_w / p_r)``.

    ``n_bins`` (per feature) limits the sum to each feature's real bins (padding excluded);
    a feature with no valid window value gets NaN.
    """
    ref_counts = np.asarray(ref_counts, dtype=float)
    win_counts = np.asarray(win_counts, dtype=float)
    if n_bins is None:
        n_bins = np.full(ref_counts.shape[0], ref_counts.shape[1])
    real = np.arange(ref_counts.shape[1])[None, :] < n_bins[:, None]
    r = np.where(real, ref_counts + smoothing, 0.0)
    w = np.where(real, win_counts + smoothing, 0.0)
    p_r = r / r.sum(axis=1, keepdims=True)
    p_w = w / w.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(real, (p_w - p_r) * np.log(p_w / p_r), 0.0)
    out = terms.sum(axis=1)
    return np.where(win_counts.sum(axis=1) > 0, out, np.nan)
