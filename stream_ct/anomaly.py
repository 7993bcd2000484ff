"""Parametric outlier detection: river's HalfSpaceTrees fitted on a reference window.

Scores are in [0, 1], higher is more anomalous; a part is flagged when its score exceeds the
threshold, the ``1 - contamination`` quantile of the training window's scores.

A part with no measurement at all (every test missing, null, NaN or a sentinel such as 9.9e37:
a contact failure, a part binned out before its parametric tests) is not scored: its score is
NaN, so it is never flagged, and serve publishes it with score and prediction null. A part with
some results is scored on those, its missing tests taken at the training window's median (as
the supervised models' imputer does). river's trees would send a missing test down whichever
branch happens to hold more of the current window, so a typical part with 10 % of its 50 tests
missing was flagged one time in five at a 1 % contamination, and an empty row scored near 1.
A test the training window never measured is left out. Parts with no measurement are left out
of fitting and of the threshold too.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> model = AnomalyModel(contamination=0.02, seed=1).fit(rng.normal(size=(2000, 3)))
>>> bool(model.score_samples(np.array([[8.0, 8.0, 8.0]]))[0] > model.threshold)
True
>>> model.score_samples(np.array([[np.nan, np.nan, np.nan]])).tolist()
[nan]
>>> bool(model.score_samples(np.array([[0.1, np.nan, np.nan]]))[0] > model.threshold)
False
"""

from __future__ import annotations

import numpy as np
from river import anomaly, compose, preprocessing, stats


class AnomalyModel:
    """HalfSpaceTrees on min-max scaled features; a NaN (missing or sentinel) value is taken at
    the training median, a row of NaN is not scored."""

    def __init__(self, contamination: float = 0.01, n_trees: int = 25, height: int = 8, seed: int = 0):
        self.contamination, self.n_trees, self.height, self.seed = contamination, n_trees, height, seed
        self.threshold = 1.0
        self.model = None
        self.medians: np.ndarray | None = None  # per test; NaN for a test the window never measured

    def __setstate__(self, state: dict) -> None:
        # a model registered before the medians scores as it did, leaving missing tests out
        self.__dict__.update(state)
        self.__dict__.setdefault("medians", None)

    def _rows(self, X: np.ndarray):
        """One dict per row, missing tests at their median; empty for a row with no measurement."""
        if self.medians is None:
            yield from ({j: v for j, v in enumerate(row) if v == v} for row in X.tolist())
            return
        missing = np.isnan(X)
        filled = np.where(missing, self.medians, X)
        measured_tests = np.flatnonzero(~np.isnan(self.medians))
        for row, empty in zip(filled[:, measured_tests].tolist(), missing.all(axis=1).tolist()):
            yield {} if empty else dict(zip(measured_tests.tolist(), row))

    def fit(self, X: np.ndarray, y=None) -> "AnomalyModel":
        """Learn the parts with a measurement (the others are not scored, ``score_samples``)."""
        X = np.asarray(X, dtype=float)
        measured = X[~np.isnan(X).all(axis=1)]
        self.medians = np.full(X.shape[1], np.nan)
        tested = ~np.isnan(measured).all(axis=0)
        self.medians[tested] = np.nanmedian(measured[:, tested], axis=0)
        rows = [row for row in self._rows(X) if row]
        # the trees score 0 until their first window is full: at most half the rows, so that they score
        window = min(max(50, len(rows) // 4), 1000, max(1, len(rows) // 2))
        self.model = compose.Pipeline(preprocessing.MinMaxScaler(),
                                      anomaly.HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                                             window_size=window, seed=self.seed))
        for row in rows:
            self.model.learn_one(row)
        scores = np.array([self.model.score_one(row) for row in rows])
        self.threshold = float(np.quantile(scores, 1 - self.contamination))
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores; NaN for a part with no measurement (not scored, never flagged)."""
        rows = self._rows(np.asarray(X, dtype=float))
        return np.array([self.model.score_one(row) if row else np.nan for row in rows], dtype=float)


class RunningMedians:
    """Streaming medians of each test seen (river's P² quantile), to fill a row's missing tests:
    the online model's counterpart of ``AnomalyModel``'s training medians.

    >>> medians = RunningMedians()
    >>> for v in (1.0, 2.0, 3.0, 4.0, 5.0):
    ...     medians.update({"vdd": v, "idd": 10 * v})
    >>> medians.fill({"vdd": 9.0})
    {'vdd': 9.0, 'idd': 30.0}
    """

    def __init__(self):
        self.medians: dict = {}

    def fill(self, row: dict) -> dict:
        """``row`` with every test it lacks at that test's median so far."""
        if len(row) == len(self.medians):
            return row
        return {**row, **{k: q.get() for k, q in self.medians.items() if k not in row}}

    def update(self, row: dict) -> None:
        for k, v in row.items():
            quantile = self.medians.get(k)
            if quantile is None:
                quantile = self.medians[k] = stats.Quantile(0.5)
            quantile.update(v)
