"""Full-batch L-BFGS in torch (CPU or GPU) for scikit-learn's multinomial logistic regression.

The objective is scikit-learn's exactly: mean cross-entropy + ||W||^2 / (2 C n), intercept
unpenalised; L-BFGS with 10 corrections stops as scipy's does at max |gradient| <= tol or
max_iter iterations, and at a loss change below 64 machine epsilons, but in the features'
precision: with float32 features that comes sooner than scipy's float64 test, so fits at
weak regularisation stop earlier (tests bound the difference).  The result is a fitted
`LogisticRegression`, so nothing downstream changes.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from clipprobe.errors import ClipprobeError

TOL = 1e-4  # LogisticRegression's default


def device_for(name: str) -> torch.device:
    """`auto` is the GPU where there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and torch.cuda.device_count() <= (int(name[5:]) if name[5:] else 0):
        raise ClipprobeError(f"train.device={name}: no such CUDA device here "
                             f"({torch.cuda.device_count()} visible); use auto or cpu")
    return torch.device(name)


def fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int = 1000, start: LogisticRegression | None = None,
        device: str = "auto", tol: float = TOL) -> LogisticRegression:
    dev = device_for(device)
    classes, target = np.unique(y, return_inverse=True)
    n, d = x.shape
    X = torch.tensor(x, device=dev)  # a copy: store arrays are read-only
    Y = torch.as_tensor(target, device=dev)
    w = torch.zeros((len(classes), d + 1), dtype=X.dtype, device=dev)
    if start is not None:
        w[:, :d] = torch.as_tensor(start.coef_, dtype=X.dtype)
        w[:, d] = torch.as_tensor(start.intercept_, dtype=X.dtype)
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=max_iter, max_eval=max_iter * 50, history_size=10,
                            tolerance_grad=tol, tolerance_change=64 * torch.finfo(X.dtype).eps,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(X @ w[:, :d].T + w[:, d], Y)
                + w[:, :d].square().sum() / (2 * C * n))
        loss.backward()
        return loss

    opt.step(closure)
    coef = w.detach().cpu().numpy()
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    clf.classes_, clf.coef_ = classes, coef[:, :d]
    clf.intercept_ = coef[:, d] - coef[:, d].mean()  # softmax ignores a shared shift; sklearn's sums to 0
    clf.n_features_in_ = d
    clf.n_iter_ = np.asarray([opt.state[w]["n_iter"]], dtype=np.int32)
    return clf
