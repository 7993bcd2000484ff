"""The online (river) model: predict each record, then learn from it once its label is known.

Anomaly consumers have no labels: their online model (HalfSpaceTrees) scores, then learns,
every record.

>>> m = OnlineModel("classification")
>>> m.predict_learn([{"a": 1.0}, {"a": -1.0}], [1.0, 0.0]).shape
(2,)
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from river import anomaly, compose, linear_model, optim, preprocessing

#: river's defaults for its linear models: intercept learning rate and gradient clip.
_INTERCEPT_LR = 0.01
_CLIP_GRADIENT = 1e12


class _ScaledLinear:
    """``StandardScaler | LogisticRegression`` (or ``LinearRegression``) with plain SGD, as river
    computes them record by record (same update order and formulas: Welford per feature, a
    feature absent from a row is neither updated nor used, zero-variance features scale to 0,
    log or squared loss, intercept rate 0.01, clip 1e12), but with the per-feature work in
    numpy: one record costs a dozen array operations instead of five dict passes in Python.
    Scores agree with river's to rounding (about 1e-12; checked by the unit tests and
    benchmarks/serve_throughput.py --online).
    """

    def __init__(self, task: str, learning_rate: float):
        self.classify = task == "classification"
        self.lr = learning_rate
        self.slot: dict[str, int] = {}
        self.counts = np.zeros(0)
        self.means = np.zeros(0)
        self.vars = np.zeros(0)
        self.weights = np.zeros(0)
        self.intercept = 0.0

    def _slots(self, keys: tuple) -> np.ndarray:
        slot = self.slot
        new = [k for k in keys if k not in slot]
        if new:
            for k in new:
                slot[k] = len(slot)
            grow = np.zeros(len(new))
            self.counts, self.means, self.vars, self.weights = (
                np.concatenate([a, grow]) for a in (self.counts, self.means, self.vars, self.weights))
        return np.fromiter((slot[k] for k in keys), dtype=np.intp, count=len(keys))

    def run(self, rows: Sequence[dict[str, float]], labels: Sequence[float]) -> np.ndarray:
        """Score each row with the model as it was before it, then learn it if labeled."""
        n = len(rows)
        scores = np.empty(n)
        if not n:
            return scores
        layouts: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            layouts.setdefault(tuple(row), []).append(i)
        plan: list = [None] * n  # (slots, or None for "every slot in order"; values)
        slotted = [(self._slots(keys), members) for keys, members in layouts.items()]  # every slot exists now
        d = len(self.slot)
        for slots, members in slotted:
            block = np.fromiter(itertools.chain.from_iterable(rows[i].values() for i in members), dtype=float,
                                count=len(members) * len(slots)).reshape(len(members), len(slots))
            if len(slots) == d and bool((slots == np.arange(d)).all()):
                slots = None
            for i, values in zip(members, block):
                plan[i] = (slots, values)
        labels = np.asarray(labels, dtype=float)
        for i in range(n):
            slots, x = plan[i]
            y = labels[i]
            if slots is None:
                mean, var, w = self.means, self.vars, self.weights
            else:
                mean, var, w = self.means[slots], self.vars[slots], self.weights[slots]
            raw = float(np.dot(w, self._scale(x, mean, var))) + self.intercept
            scores[i] = _sigmoid(raw) if self.classify else raw
            if not math.isnan(y):
                self._learn(slots, x, y)
        return scores

    @staticmethod
    def _scale(x, mean, var):
        out = np.zeros(len(x))
        np.divide(x - mean, np.sqrt(var), out=out, where=var != 0)
        return out

    def _learn(self, slots, x, y: float) -> None:
        if slots is None:
            counts, means, vars_ = self.counts, self.means, self.vars
            counts += 1.0
            old = means.copy()
            means += (x - old) / counts
            vars_ += ((x - old) * (x - means) - vars_) / counts
            xs = self._scale(x, means, vars_)
            raw = float(np.dot(self.weights, xs)) + self.intercept
        else:
            self.counts[slots] += 1.0
            counts = self.counts[slots]
            old = self.means[slots]
            means = old + (x - old) / counts
            vars_ = self.vars[slots]
            vars_ = vars_ + ((x - old) * (x - means) - vars_) / counts
            self.means[slots], self.vars[slots] = means, vars_
            xs = self._scale(x, means, vars_)
            raw = float(np.dot(self.weights[slots], xs)) + self.intercept
        if self.classify:
            g = _log_gradient(y, raw)
        else:
            g = 2.0 * (raw - y)
        g = min(max(g, -_CLIP_GRADIENT), _CLIP_GRADIENT)
        self.intercept -= _INTERCEPT_LR * g
        if slots is None:
            self.weights -= self.lr * (xs * g)
        else:
            self.weights[slots] -= self.lr * (xs * g)


def _sigmoid(z: float) -> float:
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


def _log_gradient(y: float, raw: float) -> float:
    sign = -1.0 if y == 0 else 1.0
    z = raw * sign
    if z > 18.0:
        return math.exp(-z) * -sign
    if z < -18.0:
        return -sign
    return -sign / (math.exp(z) + 1.0)


class OnlineModel:
    """Standardize, then logistic (classification), softmax (multiclass) or linear (regression)
    regression; min-max scaling and HalfSpaceTrees for anomaly."""

    def __init__(self, task: str, learning_rate: float = 0.01, engine: str = "numpy"):
        self.task = task
        #: "numpy": classification and regression run river's maths vectorized over features
        #: (same scores to rounding, several times faster); "river": river's pipeline throughout.
        self.fast = _ScaledLinear(task, learning_rate) if engine == "numpy" and task in (
            "classification", "regression") else None
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
        if self.fast is not None:
            scores = self.fast.run(rows, labels)
            self.n_learned += int(np.count_nonzero(~np.isnan(np.asarray(labels, dtype=float))))
            return scores
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
        if self.fast is not None:
            self.fast.run([row], [float(label)])
            self.n_learned += 1
            return
        target = {"classification": bool, "multiclass": int}.get(self.task, float)(label)
        self.model.learn_one(row, target)
        self.n_learned += 1
