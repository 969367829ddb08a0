"""The probe held as coefficients: a fitted `LogisticRegression` or a one-vs-rest probe.

scikit-learn's `LogisticRegression` from given
coefficients (how the torch solver hands back its fit, how stored probes and warm starts become
classifiers again) and the one-vs-rest probe of multi-label datasets.  No solver here, so loading a
probe never imports one."""

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


class MultiLabelProbe:
    """One-vs-rest: a binary L2 logistic regression per class (PASCAL VOC's classification task),
    held as the multinomial probe is: `coef_` [classes, d], `intercept_` [classes]."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, C: float, max_iter: int = 1000,
                 n_iter: int = 0):
        self.coef_, self.intercept_, self.C, self.max_iter = coef, intercept, C, max_iter
        self.classes_ = np.arange(len(coef))
        self.n_iter_ = np.asarray([n_iter], dtype=np.int32)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_.T + self.intercept_
