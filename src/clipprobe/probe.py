"""The linear probe: scikit-learn's L2-regularised multinomial logistic regression (L-BFGS), or for
multi-label datasets one binary one per class, the CLIP paper's search for C, and pickle-free
storage of the fitted classifier."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from clipprobe.errors import ClipprobeError
from clipprobe.logreg import with_coefficients

# CLIP paper, appendix A.3: a coarse sweep over 1e-6..1e6, then a binary search in log10(C).
COARSE_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
BISECTION_STEPS = 8


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
            from clipprobe import torch_solver  # torch takes seconds to import: only when asked for
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


def _with_coefficients(like, coef: np.ndarray, intercept: np.ndarray, C: float):
    """A probe of `like`'s kind (multinomial or one-vs-rest) holding these coefficients."""
    if isinstance(like, MultiLabelProbe):
        return MultiLabelProbe(coef, intercept, C)
    return with_coefficients(coef, intercept, like.classes_, C=C)


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


@dataclass
class Search:
    """The C search's result: every C fitted in order, with its validation score (the score
    function's: top-1 by default) and L-BFGS iterations, and the probe fitted at the chosen C
    (the refit's warm start)."""
    C: float
    val_score: float
    probe: LogisticRegression
    fits: list[tuple[float, float, int]] = field(default_factory=list)  # (C, val score, iterations)
    early_exit: bool = False

    @property
    def n_fits(self) -> int:
        return len(self.fits)

    @property
    def curve(self) -> dict[float, float]:
        return {c: acc for c, acc, _ in sorted(self.fits)}


def _peaked(accs: list[float]) -> bool:
    """The coarse curve has clearly peaked: its last two points both fall below its best."""
    return len(accs) >= 3 and max(accs[-2:]) < max(accs[:-2])


def _start(probes: dict[float, LogisticRegression], C: float) -> LogisticRegression | None:
    """A warm start for C: between two fitted Cs the coefficients interpolated linearly in
    log10(C) (the bisection's case: its steps halve, so the guess sharpens as they do);
    outside them the nearest fitted probe."""
    below = [c for c in probes if c < C]
    above = [c for c in probes if c > C]
    if not below or not above:
        return probes[min(probes, key=lambda c: abs(math.log10(c / C)))] if probes else None
    lo, hi = probes[max(below)], probes[min(above)]
    t = math.log(C / lo.C) / math.log(hi.C / lo.C)
    return _with_coefficients(lo, (1 - t) * lo.coef_ + t * hi.coef_, (1 - t) * lo.intercept_ + t * hi.intercept_, C)


def search_C(x_tr, y_tr, x_val, y_val, max_iter: int = 1000, solver: str = "sklearn",
             device: str = "auto", memory: int | str = "auto", score=None) -> Search:
    """The CLIP paper's search: coarse grid, then 8 bisection steps of log10(C) around the best
    validation `score(probe, x_val, y_val)` (None: `top1`; report.scorer gives the dataset's
    headline metric).

    The comparisons are CoOp's lpclip's; what differs is the work.  The coarse grid runs
    from the smallest C up, each fit warm-started from the last, and stops once the curve
    has clearly peaked (two points below the best: the skipped large Cs are the slowest
    fits).  Every C is fitted once, warm-started by `_start`.  The chosen C has the best
    validation score of all fitted; ties go to the smaller C.
    """
    score = score or top1
    probes: dict[float, LogisticRegression] = {}
    fits: list[tuple[float, float, int]] = []
    if solver == "torch" and np.ndim(y_tr) == 1:  # centre and eigendecompose the features once for every C
        from clipprobe import torch_solver
        x_tr, y_tr = torch_solver.Problem(x_tr, y_tr, device, memory), None

    def at(C: float) -> float:
        if C not in probes:
            clf = fit(x_tr, y_tr, C, max_iter, solver, start=_start(probes, C), device=device, memory=memory)
            probes[C] = clf
            fits.append((C, score(clf, x_val, y_val), int(np.max(clf.n_iter_))))
        return next(acc for c, acc, _ in fits if c == C)

    coarse = []
    for c in sorted(COARSE_GRID):
        coarse.append(at(c))
        if _peaked(coarse):
            break
    early_exit = len(coarse) < len(COARSE_GRID)
    top = len(coarse) - 1 - int(np.argmax(coarse[::-1]))  # lpclip's argmax over 1e6..1e-6: ties -> larger C
    peak = math.log10(sorted(COARSE_GRID)[top])
    lo, hi = peak - 1, peak + 1
    for _ in range(BISECTION_STEPS):
        if at(10 ** lo) < at(10 ** hi):
            lo = (lo + hi) / 2
        else:
            hi = (lo + hi) / 2
    best, acc, _ = max(fits, key=lambda f: (f[1], -f[0]))
    return Search(C=best, val_score=acc, probe=probes[best], fits=fits, early_exit=early_exit)


def check_features(info: dict, manifest: dict, where: str) -> None:
    """Stop unless the features in `where` come from the encoder the probe was trained on."""
    for key in ("arch", "weights_id", "layer", "embed_dim"):
        if manifest.get(key) != info.get(key):
            raise ClipprobeError(f"{where}: features have {key}={manifest.get(key)!r} but the probe was trained "
                                 f"on {key}={info.get(key)!r}; run `dvc repro` to rebuild both")


# ---------------------------------------------------------------- storage without pickle

def save(clf: LogisticRegression, directory: Path, meta: dict) -> None:
    """Write `probe.npz` (arrays only) and `probe.json` (everything else)."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "probe.npz", coef=clf.coef_.astype(np.float64),
             intercept=clf.intercept_.astype(np.float64), classes=clf.classes_.astype(np.int64))
    info = {"C": float(clf.C), "max_iter": int(clf.max_iter), "n_iter": int(np.max(clf.n_iter_)),
            "n_features": int(clf.coef_.shape[1]), "multi_label": isinstance(clf, MultiLabelProbe), **meta}
    (directory / "probe.json").write_text(json.dumps(info, indent=2) + "\n")


def load(directory: Path) -> tuple[LogisticRegression, dict]:
    """The stored probe as a fitted scikit-learn `LogisticRegression` (multi-label: a
    `MultiLabelProbe`), and its metadata."""
    directory = Path(directory)
    for name in ("probe.npz", "probe.json"):
        if not (directory / name).is_file():
            raise ClipprobeError(f"{directory / name} is missing; run `dvc repro train` first")
    info = json.loads((directory / "probe.json").read_text())
    with np.load(directory / "probe.npz", allow_pickle=False) as arrays:
        if info.get("multi_label"):
            return MultiLabelProbe(arrays["coef"], arrays["intercept"], info["C"], info["max_iter"],
                                   info["n_iter"]), info
        clf = with_coefficients(arrays["coef"], arrays["intercept"], arrays["classes"],
                                C=info["C"], solver="lbfgs", max_iter=info["max_iter"])
    clf.n_iter_ = np.asarray([info["n_iter"]], dtype=np.int32)
    return clf, info


def save_start(clf: LogisticRegression | None, path: Path) -> None:
    """The search's probe at the chosen C, for the refit to start from (no arrays: none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {} if clf is None else {"coef": clf.coef_, "intercept": clf.intercept_, "classes": clf.classes_,
                                     "multi_label": isinstance(clf, MultiLabelProbe)}
    np.savez(path, **arrays)


def classes_of(y: np.ndarray) -> np.ndarray:
    """The classes a probe fitted on labels `y` has (multi-label: one per column)."""
    return np.arange(y.shape[1]) if y.ndim == 2 else np.unique(y)


def load_start(path: Path, classes: np.ndarray) -> LogisticRegression | None:
    """The stored start, or None where there is none or it was fitted on other classes."""
    with np.load(path, allow_pickle=False) as arrays:
        if "coef" not in arrays or not np.array_equal(arrays["classes"], classes):
            return None
        if arrays["multi_label"]:
            return MultiLabelProbe(arrays["coef"], arrays["intercept"], C=1.0)
        return with_coefficients(arrays["coef"], arrays["intercept"], arrays["classes"])
