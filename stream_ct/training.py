"""Estimators and metrics for candidates and champions.

Pure functions, no Kafka: the retrain worker reads the window, this module fits and scores.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(600, 3)); y = (X[:, 0] + 0.3 * rng.normal(size=600) > 0).astype(float)
>>> est = build_estimator("classification", "logistic_regression").fit(X[:400], y[:400])
>>> round(evaluate("classification", est, X[400:], y[400:])["auc"], 2) > 0.9
True
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stream_ct import model_metrics
from stream_ct.anomaly import AnomalyModel

#: The metric each task's gates judge: higher is better, except anomaly's flag rate (a ceiling).
PRIMARY_METRIC = {"classification": "auc", "multiclass": "accuracy", "regression": "r2",
                  "anomaly": "flag_rate"}


def build_estimator(task: str, kind: str, seed: int = 0, contamination: float = 0.01):
    """A fresh, unfitted estimator; NaN (missing or sentinel results) is handled."""
    classify = task in ("classification", "multiclass")
    if kind == "half_space_trees":
        return AnomalyModel(contamination=contamination, seed=seed)
    if kind == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(max_iter=150, learning_rate=0.1, random_state=seed)
    if kind == "random_forest":
        cls = RandomForestClassifier if classify else RandomForestRegressor
        return make_pipeline(SimpleImputer(strategy="median"), cls(n_estimators=100, n_jobs=1, random_state=seed))
    if kind == "logistic_regression":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=500))
    if kind == "ridge":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), Ridge())
    raise ValueError(f"unknown estimator {kind!r}")


def fit(estimator, X: np.ndarray, y: np.ndarray, half_life: int = 0):
    """Fit, with recency weights ``0.5 ** (age / half_life)`` when a half-life is set. A
    gradient-boosting classifier fits without early stopping when a class (a rare bin) has one
    row: on more than 10,000 rows it holds out a stratified tenth, which needs two of each."""
    if isinstance(estimator, HistGradientBoostingClassifier) and np.unique(y, return_counts=True)[1].min() < 2:
        estimator.set_params(early_stopping=False)
    if half_life <= 0 or isinstance(estimator, AnomalyModel):  # river models take no weights
        return estimator.fit(X, y)
    weights = 0.5 ** (np.arange(len(y))[::-1] / half_life)
    if hasattr(estimator, "steps"):
        return estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__sample_weight": weights})
    return estimator.fit(X, y, sample_weight=weights)


def score(task: str, estimator, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class (classification), the predicted class (multiclass),
    the predicted value (regression) or the anomaly score (anomaly)."""
    if task == "classification":
        return estimator.predict_proba(X)[:, 1]
    if task == "anomaly":
        return estimator.score_samples(X)
    return estimator.predict(X).astype(float)


def metrics_from_scores(task: str, scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Metrics of scores against labels (tasks with labels)."""
    if task == "multiclass":
        return {"accuracy": model_metrics.accuracy(y, scores), "f1_macro": model_metrics.f1_macro(y, scores)}
    if task == "classification":
        labels = (scores >= 0.5).astype(float)
        return {"auc": model_metrics.auc(y, scores), "accuracy": model_metrics.accuracy(y, labels),
                "f1": model_metrics.f1(y, labels)}
    nonzero = np.abs(y) > 1e-12
    mape = float(np.mean(np.abs((y[nonzero] - scores[nonzero]) / y[nonzero]))) if nonzero.any() else float("nan")
    return {"r2": model_metrics.r2(y, scores), "mae": model_metrics.mae(y, scores), "mape": mape}


def evaluate(task: str, estimator, X: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    """Holdout metrics; for anomaly (no labels) the share of the scored rows flagged (a part with
    no measurement is not scored)."""
    if task == "anomaly":
        scores = estimator.score_samples(X)
        scored = scores[~np.isnan(scores)]
        return {"flag_rate": float(np.mean(scored > estimator.threshold)) if len(scored) else float("nan")}
    return metrics_from_scores(task, score(task, estimator, X), y)
