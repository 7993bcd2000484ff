"""The online (river) model: predict each record, then learn from it once its label is known.

Anomaly consumers have no labels: their online model (HalfSpaceTrees) scores, then learns,
every record; a record's missing tests are taken at their running medians (``anomaly.py``).
river builds the trees on the tests of the first record they learn, so a test they lack
starts a window of parts carrying it, on which they are rebuilt once it is full (the old trees
score meanwhile).

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

from stream_ct.anomaly import RunningMedians
from stream_ct.features import Measurements

#: river's defaults for its linear models: intercept learning rate and gradient clip.
_INTERCEPT_LR = 0.01
_CLIP_GRADIENT = 1e12


class _ScaledLinear:
    """``StandardScaler | LogisticRegression`` (or ``LinearRegression``) with plain SGD, as river
    computes them record by record (same update order and formulas: Welford per feature, a
    feature absent from a row is neither updated nor used, zero-variance features scale to 0,
    log or squared loss, intercept rate 0.01, clip 1e12), computed a batch at a time.

    Records are taken in chunks of ``chunk``. The scaler's state depends on the data only,
    so every record's scaled values (with the statistics before it, to predict, and after
    it, to learn) come from prefix sums over the chunk. The weights depend on each
    gradient: with ``w_t = w - lr * sum_{s<t} g_s x_s`` inside a chunk, a record's raw
    score is its dot product with the chunk's starting weights minus a short sum over the
    chunk's Gram matrix, so the per-record work is two dot products of at most ``chunk``
    numbers. Scores agree with river's to rounding (about 1e-12; ``tests/test_unit_online``
    checks it against river's pipeline).
    """

    def __init__(self, task: str, learning_rate: float, chunk: int = 32):
        self.classify = task == "classification"
        self.lr, self.chunk = learning_rate, int(chunk)
        self.slot: dict[str, int] = {}
        self.counts = np.zeros(0)
        self.means = np.zeros(0)
        self.vars = np.zeros(0)
        self.weights = np.zeros(0)
        self.intercept = 0.0

    def _slots(self, layouts) -> None:
        """Slots for the keys not seen before (the state arrays grow with zeros)."""
        slot = self.slot
        for keys in layouts:
            for k in keys:
                if k not in slot:
                    slot[k] = len(slot)
        grow = len(slot) - len(self.weights)
        if grow:
            self.counts, self.means, self.vars, self.weights = (
                np.concatenate([a, np.zeros(grow)]) for a in (self.counts, self.means, self.vars, self.weights))

    def _matrix(self, rows: Sequence[dict[str, float]]) -> tuple[np.ndarray, bool]:
        """Rows as an (n x slots) array, NaN where a row lacks the feature (new features get
        slots), and whether no row lacks one."""
        layouts: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            layouts.setdefault(tuple(row), []).append(i)
        self._slots(layouts)
        slot = self.slot
        complete = all(len(keys) == len(slot) for keys in layouts)
        X = np.empty((len(rows), len(slot))) if complete else np.full((len(rows), len(slot)), np.nan)
        for keys, members in layouts.items():
            block = np.fromiter(itertools.chain.from_iterable(rows[i].values() for i in members), dtype=float,
                                count=len(members) * len(keys)).reshape(len(members), len(keys))
            cols = np.fromiter((slot[k] for k in keys), dtype=np.intp, count=len(keys))
            if len(members) == len(rows):
                X[:, cols] = block
            else:
                X[np.ix_(members, cols)] = block
        return X, complete

    def _matrix_of(self, batch: Measurements) -> tuple[np.ndarray, bool]:
        """The same from a batch's result blocks (a non-measurement is a NaN there, which the
        scaler treats as an absent feature, as river does with the filtered row)."""
        self._slots(keys for keys, _, _ in batch.blocks)
        X = batch.matrix(list(self.slot))
        return X, not np.isnan(X).any()

    def _scaled(self, X: np.ndarray, complete: bool, learned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row scaled with the statistics before it (predict) and after it (learn), and
        the scaler's state moved past the batch. Only ``learned`` rows update the statistics.

        Welford in closed form: with values shifted by ``a`` (the running mean, or a feature's
        first value if it has none yet), after ``n`` values in all ``mean = a + S1/n`` and
        ``M2 = M2_0 + S2 - S1**2/n`` (``S1``, ``S2``: prefix sums of the shifted values).
        A constant feature shifts to exact zeros, so its variance stays exactly 0 as in river.
        """
        n, d = X.shape
        missing = None if complete else np.isnan(X)
        dense = complete and bool(learned.all())
        if dense:
            present = None
            first = X[0]
            n_in = self.counts + np.arange(1.0, n + 1.0)[:, None]
        else:
            present = learned[:, None] if missing is None else ~missing & learned[:, None]
            present = np.broadcast_to(present, X.shape)
            first = X[np.argmax(present, axis=0), np.arange(d)]
            n_in = self.counts + np.cumsum(present, axis=0)
        shift = np.where(self.counts > 0, self.means, np.nan_to_num(first))
        dev = X - shift
        if present is not None:
            dev[~present] = 0.0
        s1 = np.cumsum(dev, axis=0)
        s2 = np.cumsum(np.square(dev, out=dev), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv_n = 1.0 / n_in
            mean_in = shift + s1 * inv_n
            var_in = (self.vars * self.counts + s2 - s1 * s1 * inv_n) * inv_n
        if present is not None:  # no value yet: river's state is mean 0, variance 0
            none = n_in == 0
            mean_in[none], var_in[none] = 0.0, 0.0
        np.maximum(var_in, 0.0, out=var_in)
        sd_in = np.sqrt(var_in)
        learn_x = _standardize(X, mean_in, sd_in)
        predict_x = np.empty_like(X)
        predict_x[0] = _standardize(X[:1], self.means[None, :], np.sqrt(self.vars)[None, :])[0]
        predict_x[1:] = _standardize(X[1:], mean_in[:-1], sd_in[:-1])
        if missing is not None:
            learn_x[missing] = predict_x[missing] = 0.0
        self.counts, self.means, self.vars = n_in[-1].copy(), mean_in[-1].copy(), var_in[-1].copy()
        return predict_x, learn_x

    def run(self, rows: Sequence[dict[str, float]] | Measurements, labels: Sequence[float]) -> np.ndarray:
        """Score each row with the model as it was before it, then learn it if labeled."""
        n = rows.n if isinstance(rows, Measurements) else len(rows)
        scores = np.empty(n)
        if not n:
            return scores
        labels = np.asarray(labels, dtype=float)
        learned = ~np.isnan(labels)
        X, complete = self._matrix_of(rows) if isinstance(rows, Measurements) else self._matrix(rows)
        lr, w, b = self.lr, self.weights, self.intercept
        for c0 in range(0, n, self.chunk):  # chunk by chunk: the arrays stay in cache
            c1 = min(n, c0 + self.chunk)
            P, L = self._scaled(X[c0:c1], complete, learned[c0:c1])
            p0, l0 = (P @ w).tolist(), (L @ w).tolist()
            A, B = L @ P.T, L @ L.T  # A[s, t] = L_s . P_t
            g = np.zeros(c1 - c0)
            for t in range(c1 - c0):
                raw = p0[t] - lr * float(g[:t] @ A[:t, t]) + b
                scores[c0 + t] = _sigmoid(raw) if self.classify else raw
                if learned[c0 + t]:
                    raw = l0[t] - lr * float(g[:t] @ B[:t, t]) + b
                    gt = _log_gradient(labels[c0 + t], raw) if self.classify else 2.0 * (raw - labels[c0 + t])
                    gt = min(max(gt, -_CLIP_GRADIENT), _CLIP_GRADIENT)
                    g[t] = gt
                    b -= _INTERCEPT_LR * gt
            w = w - lr * (g @ L)
        self.weights, self.intercept = w, b
        return scores


def _outlier_pipeline() -> compose.Pipeline:
    """Min-max scaling, then river's HalfSpaceTrees (built on the first part they learn)."""
    return compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=0))


def _standardize(X: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``(X - mean) / sd``, 0 where ``sd`` is 0 (river's StandardScaler)."""
    out = np.zeros_like(X)
    np.divide(X - mean, sd, out=out, where=sd != 0)
    return out


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
            self.model = _outlier_pipeline()
            self.medians = RunningMedians()
            #: how many tests the trees split on (None before the first part built them)
            self.tree_tests: int | None = None
            #: parts learned since a test the trees lack came, each with every test seen so far
            self.new_test_rows: list[dict[str, float]] = []
        else:
            head = {"classification": lambda: linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate)),
                    "multiclass": lambda: linear_model.SoftmaxRegression(optimizer=optim.SGD(learning_rate)),
                    "regression": lambda: linear_model.LinearRegression(optimizer=optim.SGD(learning_rate))}[task]()
            self.model = compose.Pipeline(preprocessing.StandardScaler(), head)
        self.n_learned = 0

    def predict_learn(self, rows: Sequence[dict[str, float]] | Measurements, labels: Sequence[float]) -> np.ndarray:
        """Score every row with the model as it was before that row, then learn the labeled ones.
        ``rows`` are dicts of measurements, or a batch's ``Measurements`` (the numpy engine
        reads its blocks; river's models get its rows).

        Returns P(positive) for classification, the predicted value for regression.
        """
        n = rows.n if isinstance(rows, Measurements) else len(rows)
        if n != len(labels):
            raise ValueError(f"{n} rows but {len(labels)} labels")
        if self.fast is not None:
            scores = self.fast.run(rows, labels)
            self.n_learned += int(np.count_nonzero(~np.isnan(np.asarray(labels, dtype=float))))
            return scores
        if isinstance(rows, Measurements):
            rows = rows.rows()
        scores = np.empty(len(rows))
        for i, (x, y) in enumerate(zip(rows, labels)):
            if self.task == "anomaly":
                scores[i] = self._score_learn_part(x)
                continue
            if self.task == "classification":
                scores[i] = self.model.predict_proba_one(x).get(True, 0.5)
            else:
                prediction = self.model.predict_one(x)
                scores[i] = np.nan if prediction is None else float(prediction)
            if not math.isnan(y):
                self.learn(x, y)
        return scores

    def _score_learn_part(self, x: dict[str, float]) -> float:
        """A part's outlier score, then learn it, its missing tests at their running medians;
        a part with no measurement is not scored (``anomaly.py``)."""
        if not x:
            return math.nan
        self.medians.update(x)
        x = self.medians.fill(x)
        score = self.model.score_one(x)
        self._learn_part(x)
        self.n_learned += 1
        return score

    def _learn_part(self, x: dict[str, float]) -> None:
        """Learn a part (every test seen in it, the missing ones at their medians). A part with a
        test the trees lack starts a window of such parts (a further new test starts it again);
        once it holds a whole window the trees are rebuilt on it, scoring from the next part."""
        if self.tree_tests is None:
            self.tree_tests = len(x)
        elif len(x) > self.tree_tests:
            rows = self.new_test_rows
            if rows and len(x) > len(rows[-1]):
                rows.clear()
            rows.append(x)
            if len(rows) == self.model["HalfSpaceTrees"].window_size:
                self.model = _outlier_pipeline()
                for row in rows:
                    self.model.learn_one(row)
                self.tree_tests = len(x)
                rows.clear()
                return
        self.model.learn_one(x)

    def learn(self, row: dict[str, float], label: float) -> None:
        """Learn one labeled row (a label that arrived after its prediction)."""
        if self.fast is not None:
            self.fast.run([row], [float(label)])
            self.n_learned += 1
            return
        target = {"classification": bool, "multiclass": int}.get(self.task, float)(label)
        self.model.learn_one(row, target)
        self.n_learned += 1
