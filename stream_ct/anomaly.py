"""Parametric outlier detection: river's HalfSpaceTrees fitted on a reference window.

Scores are in [0, 1], higher is more anomalous; a part is flagged when its score exceeds the
threshold, the ``1 - contamination`` quantile of the training window's scores.

A part with no measurement at all (every test missing, null, NaN or a sentinel such as 9.9e37:
a contact failure, a part binned out before its parametric tests) is not scored: its score is
NaN, so it is never flagged, and serve publishes it with score and prediction null. It has
nothing to compare: river's trees send a missing feature down the less populated branch, so
an empty row scored near 1, the most extreme outlier of all. Such parts are left out of
fitting and of the threshold too. A part with some results is scored on those.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> model = AnomalyModel(contamination=0.02, seed=1).fit(rng.normal(size=(2000, 3)))
>>> bool(model.score_samples(np.array([[8.0, 8.0, 8.0]]))[0] > model.threshold)
True
>>> model.score_samples(np.array([[np.nan, np.nan, np.nan]])).tolist()
[nan]
"""

from __future__ import annotations

import numpy as np
from river import anomaly, compose, preprocessing


class AnomalyModel:
    """HalfSpaceTrees on min-max scaled features; NaN (missing or sentinel) values are left out."""

    def __init__(self, contamination: float = 0.01, n_trees: int = 25, height: int = 8, seed: int = 0):
        self.contamination, self.n_trees, self.height, self.seed = contamination, n_trees, height, seed
        self.threshold = 1.0
        self.model = None

    def _rows(self, X: np.ndarray):
        for row in X:
            yield {j: v for j, v in enumerate(row.tolist()) if v == v}

    def fit(self, X: np.ndarray, y=None) -> "AnomalyModel":
        """Learn the parts with a measurement (the others are not scored, ``score_samples``)."""
        rows = [row for row in self._rows(X) if row]
        self.model = compose.Pipeline(preprocessing.MinMaxScaler(),
                                      anomaly.HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                                             window_size=max(50, min(len(rows) // 4, 1000)),
                                                             seed=self.seed))
        for row in rows:
            self.model.learn_one(row)
        scores = np.array([self.model.score_one(row) for row in rows])
        self.threshold = float(np.quantile(scores, 1 - self.contamination))
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores; NaN for a part with no measurement (not scored, never flagged)."""
        return np.array([self.model.score_one(row) if row else np.nan for row in self._rows(X)], dtype=float)
