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
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: The metric each task's gates compare; higher is better for both.
PRIMARY_METRIC = {"classification": "auc", "regression": "r2"}


def build_estimator(task: str, kind: str, seed: int = 0):
    """A fresh, unfitted scikit-learn estimator; NaN (missing or sentinel results) is handled."""
    if kind == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
        return cls(max_iter=150, learning_rate=0.1, random_state=seed)
    if kind == "random_forest":
        cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
        return make_pipeline(SimpleImputer(strategy="median"), cls(n_estimators=100, n_jobs=1, random_state=seed))
    if kind == "logistic_regression":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=500))
    if kind == "ridge":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), Ridge())
    raise ValueError(f"unknown estimator {kind!r}")


def score(task: str, estimator, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class (classification) or the predicted value."""
    if task == "classification":
        return estimator.predict_proba(X)[:, 1]
    return estimator.predict(X)


def metrics_from_scores(task: str, scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if task == "classification":
        labels = (scores >= 0.5).astype(float)
        auc = roc_auc_score(y, scores) if len(np.unique(y)) == 2 else float("nan")
        return {"auc": float(auc), "accuracy": float(accuracy_score(y, labels)),
                "f1": float(f1_score(y, labels, zero_division=0.0))}
    nonzero = np.abs(y) > 1e-12
    mape = float(np.mean(np.abs((y[nonzero] - scores[nonzero]) / y[nonzero]))) if nonzero.any() else float("nan")
    return {"r2": float(r2_score(y, scores)), "mae": float(mean_absolute_error(y, scores)), "mape": mape}


def evaluate(task: str, estimator, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return metrics_from_scores(task, score(task, estimator, X), y)
