"""scikit-learn's `LogisticRegression` from given coefficients: how the torch solver hands back its
fit and how stored probes and warm starts become classifiers again."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def with_coefficients(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray,
                      **params) -> LogisticRegression:
    """A `LogisticRegression` holding these coefficients, as fitting would have left it."""
    clf = LogisticRegression(**params)
    clf.coef_, clf.intercept_, clf.classes_ = coef, intercept, classes
    clf.n_features_in_ = coef.shape[1]
    return clf
