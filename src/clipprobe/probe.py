"""The linear probe: scikit-learn's L2-regularised multinomial logistic regression (L-BFGS),
the CLIP paper's search for C, and pickle-free storage of the fitted classifier."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from clipprobe.errors import ClipprobeError

# CLIP paper, appendix A.3: a coarse sweep over 1e-6..1e6, then a binary search in log10(C).
COARSE_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
BISECTION_STEPS = 8


def fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int = 1000) -> LogisticRegression:
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # n_iter_ == max_iter records it
        return clf.fit(x, y)


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) indices; every class must keep a sample on both sides."""
    classes, counts = np.unique(y, return_counts=True)
    n_val = math.ceil(fraction * len(y))
    fix = "raise data.limit_per_class or tune.val_fraction, or set C to a number"
    if counts.min() < 2:
        raise ClipprobeError(f"C: auto needs a stratified validation split, but class {classes[np.argmin(counts)]} "
                             f"has {counts.min()} train sample; {fix}")
    if n_val < len(classes) or len(y) - n_val < len(classes):
        raise ClipprobeError(f"C: auto needs a stratified validation split, but {len(classes)} classes do not fit "
                             f"in {n_val} validation and {len(y) - n_val} training samples; {fix}")
    idx = np.arange(len(y))
    tr, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=y)
    return np.sort(tr), np.sort(val)


@dataclass
class Search:
    """The C search's result and its curve (every C fitted, with its validation top-1)."""
    C: float
    val_top1: float
    curve: dict[float, float] = field(default_factory=dict)

    @property
    def n_fits(self) -> int:
        return len(self.curve)


def search_C(x_tr, y_tr, x_val, y_val, max_iter: int = 1000) -> Search:
    """The CLIP paper's search: coarse grid, then bisection of log10(C) around the best.

    Each C is fitted once (the bisection revisits no point).  The chosen C is the one with
    the best validation accuracy among all fitted; ties go to the smaller C (stronger
    regularisation).
    """
    curve: dict[float, float] = {}

    def score(C: float) -> float:
        if C not in curve:
            curve[C] = float(np.mean(fit(x_tr, y_tr, C, max_iter).predict(x_val) == y_val) * 100)
        return curve[C]

    coarse = [score(c) for c in COARSE_GRID]
    peak = math.log10(COARSE_GRID[int(np.argmax(coarse))])
    lo, hi = peak - 1, peak + 1
    for _ in range(BISECTION_STEPS):
        if score(10 ** lo) < score(10 ** hi):
            lo = (lo + hi) / 2
        else:
            hi = (lo + hi) / 2
    best = max(curve, key=lambda c: (curve[c], -c))
    return Search(C=best, val_top1=curve[best], curve=dict(sorted(curve.items())))


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
            "n_features": int(clf.coef_.shape[1]), **meta}
    (directory / "probe.json").write_text(json.dumps(info, indent=2) + "\n")


def load(directory: Path) -> tuple[LogisticRegression, dict]:
    """The stored probe as a fitted scikit-learn `LogisticRegression`, and its metadata."""
    directory = Path(directory)
    for name in ("probe.npz", "probe.json"):
        if not (directory / name).is_file():
            raise ClipprobeError(f"{directory / name} is missing; run `dvc repro train` first")
    info = json.loads((directory / "probe.json").read_text())
    with np.load(directory / "probe.npz", allow_pickle=False) as arrays:
        clf = LogisticRegression(C=info["C"], solver="lbfgs", max_iter=info["max_iter"])
        clf.coef_, clf.intercept_, clf.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
    clf.n_features_in_ = clf.coef_.shape[1]
    clf.n_iter_ = np.asarray([info["n_iter"]], dtype=np.int32)
    return clf, info
