"""The numpy metrics equal scikit-learn's on random, tied and degenerate cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score

from stream_ct import model_metrics


def _cases(seed: int):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 7, 50, 2000):
        y = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(float)
        for scores in (rng.random(n), np.round(rng.random(n), 1), np.full(n, 0.5)):  # continuous, tied, constant
            yield y, scores


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_equal_sklearn(seed):
    for y, scores in _cases(seed):
        said = (scores >= 0.5).astype(float)
        if len(np.unique(y)) == 2:
            assert model_metrics.auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        else:
            assert np.isnan(model_metrics.auc(y, scores))
        assert model_metrics.accuracy(y, said) == accuracy_score(y, said)
        assert model_metrics.f1(y, said) == pytest.approx(f1_score(y, said, zero_division=0.0), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_and_regression_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 3, 40, 2000):
        y = rng.integers(0, 5, n).astype(float)
        said = np.where(rng.random(n) < 0.6, y, rng.integers(0, 7, n)).astype(float)  # classes absent from y too
        assert model_metrics.accuracy(y, said) == accuracy_score(y, said)
        assert model_metrics.f1_macro(y, said) == pytest.approx(
            f1_score(y, said, average="macro", zero_division=0.0), abs=1e-12)
        value = rng.normal(size=n)
        guess = value + rng.normal(0, 0.5, n)
        for target in (value, np.full(n, 2.0)):
            for predicted in (guess, target):
                with warnings.catch_warnings():  # sklearn warns that R² is undefined for one value
                    warnings.simplefilter("ignore")
                    expected = r2_score(target, predicted)
                assert model_metrics.r2(target, predicted) == pytest.approx(expected, abs=1e-12, nan_ok=True)
            assert model_metrics.mae(target, guess) == pytest.approx(mean_absolute_error(target, guess), abs=1e-12)
