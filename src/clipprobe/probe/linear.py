"""The linear probe: fitting scikit-learn's L2 logistic regression to its optimum, and predicting.

Multinomial (L-BFGS), or for multi-label datasets one binary one per class, fitted to the optimum by the torch solver or by
scikit-learn's own; and its predictions without scikit-learn's input checks."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from clipprobe.probe.logreg import MultiLabelProbe, with_coefficients


def _fit_one_vs_rest(x: np.ndarray, y: np.ndarray, C: float, max_iter: int,
                     start: MultiLabelProbe | None) -> MultiLabelProbe:
    """scikit-learn's binary `LogisticRegression` per class; images marked -1 for a class (difficult
    objects only) take no part in that class's fit, as VOC's evaluation ignores them."""
    coef, intercept, n_iter = [], [], 0
    for k in range(y.shape[1]):
        keep = y[:, k] != -1
        warm = None if start is None else with_coefficients(start.coef_[k:k + 1], start.intercept_[k:k + 1],
                                                            np.array([0, 1]), C=C)
        clf = fit(x[keep], (y[keep, k] == 1).astype(np.int64), C, max_iter, "sklearn", start=warm)
        coef.append(clf.coef_[0])
        intercept.append(clf.intercept_[0])
        n_iter = max(n_iter, int(np.max(clf.n_iter_)))
    return MultiLabelProbe(np.asarray(coef), np.asarray(intercept), C, max_iter, n_iter)


def fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int = 1000, solver: str = "sklearn",
        start: LogisticRegression | None = None, device: str = "auto",
        memory: int | str = "auto") -> LogisticRegression:
    """A fitted `LogisticRegression` (L2, multinomial, unpenalised intercept, L-BFGS).

    `start` is a fitted probe on the same classes whose coefficients start L-BFGS (a warm start:
    the same objective and stopping rule, fewer iterations when `start` is near the optimum).
    `solver="torch"` minimises the same objective with torch's preconditioned L-BFGS on `device`;
    `x` may then be a `torch_solver.Problem` (the search builds one for all its fits) and `y` None;
    `memory` is its budget on `device` in bytes, or `auto` (train.memory as `params.memory_bytes` gives it).
    Multi-label `y` ([n, classes] rows, see labels.py) gives a `MultiLabelProbe`, fitted with
    scikit-learn's solver whatever `solver` says (the torch solver is multinomial only).
    """
    if np.ndim(y) == 2:
        return _fit_one_vs_rest(x, y, C, max_iter, start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # n_iter_ == max_iter records it
        if solver == "torch":
            from clipprobe.probe import (
                torch_solver,  # torch takes seconds to import: only when asked for
            )
            return torch_solver.fit(x, y, C, max_iter, start=start, device=device, memory=memory)
        # Centred features: with an unpenalised intercept an exact reparametrisation (b' = b + mean @ W.T)
        # that only improves the conditioning L-BFGS sees; the intercept is mapped back below.
        mean = x.mean(axis=0, dtype=np.float64)
        clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, warm_start=start is not None)
        if start is not None:
            clf.coef_, clf.intercept_ = start.coef_.copy(), start.intercept_ + start.coef_ @ mean
        clf.fit((x - mean).astype(x.dtype, copy=False), y)
        clf.intercept_ = clf.intercept_ - clf.coef_ @ mean
        return clf.set_params(warm_start=False)


def like(probe, coef: np.ndarray, intercept: np.ndarray, C: float):
    """A probe of `probe`'s kind (multinomial or one-vs-rest) holding these coefficients."""
    if isinstance(probe, MultiLabelProbe):
        return MultiLabelProbe(coef, intercept, C)
    return with_coefficients(coef, intercept, probe.classes_, C=C)


def predict(clf: LogisticRegression, x: np.ndarray) -> np.ndarray:
    """`clf.predict(x)`, the same arithmetic without scikit-learn's input checks, which take
    longer than a few-shot probe's prediction (a search predicts once per fit)."""
    scores = x @ clf.coef_.T + clf.intercept_
    if scores.shape[1] == 1:  # binary: one row of coefficients, for classes_[1]
        return clf.classes_[(scores[:, 0] > 0).astype(np.intp)]
    return clf.classes_[np.argmax(scores, axis=1)]


def top1(clf, x: np.ndarray, y: np.ndarray) -> float:
    """Validation top-1 in percent: the search's default score."""
    return float(np.mean(predict(clf, x) == y) * 100)
