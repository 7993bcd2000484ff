"""The online (river) model: predict each record, then learn from it once its label is known.

Anomaly consumers have no labels: their online model (HalfSpaceTrees) scores, then learns,
every record.

>>> m = OnlineModel("classification")
>>> m.predict_learn([{"a": 1.0}, {"a": -1.0}], [1.0, 0.0]).shape
(2,)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from river import anomaly, compose, linear_model, optim, preprocessing


class OnlineModel:
    """Standardize, then logistic (classification), softmax (multiclass) or linear (regression)
    regression; min-max scaling and HalfSpaceTrees for anomaly."""

    def __init__(self, task: str, learning_rate: float = 0.01):
        self.task = task
        if task == "anomaly":
            self.model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=0))
        else:
            head = {"classification": lambda: linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate)),
                    "multiclass": lambda: linear_model.SoftmaxRegression(optimizer=optim.SGD(learning_rate)),
                    "regression": lambda: linear_model.LinearRegression(optimizer=optim.SGD(learning_rate))}[task]()
            self.model = compose.Pipeline(preprocessing.StandardScaler(), head)
        self.n_learned = 0

    def predict_learn(self, rows: Sequence[dict[str, float]], labels: Sequence[float]) -> np.ndarray:
        """Score every row with the model as it was before that row, then learn the labeled ones.

        Returns P(positive) for classification, the predicted value for regression.
        """
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
        scores = np.empty(len(rows))
        for i, (x, y) in enumerate(zip(rows, labels)):
            if self.task == "classification":
                scores[i] = self.model.predict_proba_one(x).get(True, 0.5)
            elif self.task == "anomaly":
                scores[i] = self.model.score_one(x)
            else:
                prediction = self.model.predict_one(x)
                scores[i] = np.nan if prediction is None else float(prediction)
            if self.task == "anomaly":
                self.model.learn_one(x)
                self.n_learned += 1
            elif not math.isnan(y):
                self.learn(x, y)
        return scores

    def learn(self, row: dict[str, float], label: float) -> None:
        """Learn one labeled row (a label that arrived after its prediction)."""
        target = {"classification": bool, "multiclass": int}.get(self.task, float)(label)
        self.model.learn_one(row, target)
        self.n_learned += 1
