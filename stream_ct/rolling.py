"""A model version's prequential metric over its last ``size`` labeled predictions.

>>> import numpy as np
>>> m = RollingMetric("classification", size=100, min_labels=4)
>>> m.add(np.array([0.9, 0.8, 0.1, 0.3]), np.array([1.0, 1.0, 0.0, np.nan]))
>>> m.seen, m.value()
(3, None)
>>> m.add(np.array([0.2]), np.array([0.0])); round(m.value()["auc"], 2)
1.0
"""

from __future__ import annotations

import numpy as np

from stream_ct.config import MIN_LABELS
from stream_ct.training import metrics_from_scores


class RollingMetric:
    def __init__(self, task: str, size: int = 2000, min_labels: int = MIN_LABELS):
        self.task, self.size, self.min_labels = task, size, min_labels
        self.scores = np.empty(0)
        self.labels = np.empty(0)
        self.seen = 0

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        keep = ~np.isnan(labels) & ~np.isnan(scores)  # no label yet, or no prediction yet (cold start)
        if not keep.any():
            return
        self.scores = np.concatenate([self.scores, scores[keep]])[-self.size:]
        self.labels = np.concatenate([self.labels, labels[keep]])[-self.size:]
        self.seen += int(keep.sum())

    def value(self) -> dict[str, float] | None:
        """The metrics over the window, or None before ``min_labels`` labeled predictions."""
        if len(self.scores) < self.min_labels:
            return None
        return metrics_from_scores(self.task, self.scores, self.labels)
