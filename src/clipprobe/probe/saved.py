"""The fitted probe on disk, without pickle, and the search's probe as the refit's warm start.

`probe.npz` (arrays only) + `probe.json` (everything else,
the identity of the features it was fitted on included), and the search's probe at the chosen C as
the refit's warm start.  Written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from clipprobe import atomic
from clipprobe.errors import ClipprobeError
from clipprobe.probe.logreg import MultiLabelProbe, with_coefficients


def _savez(path: Path, **arrays) -> None:
    """numpy's .npz, atomically (np.savez given a name would add its own suffix to the temporary)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic.replace(path, write)


def save(clf: LogisticRegression, directory: Path, meta: dict) -> None:
    """Write `probe.npz` (arrays only) and `probe.json` (everything else)."""
    info = {"C": float(clf.C), "max_iter": int(clf.max_iter), "n_iter": int(np.max(clf.n_iter_)),
            "n_features": int(clf.coef_.shape[1]), "multi_label": isinstance(clf, MultiLabelProbe), **meta}
    with atomic.folder(directory) as tmp:
        _savez(tmp / "probe.npz", coef=clf.coef_.astype(np.float64), intercept=clf.intercept_.astype(np.float64),
               classes=clf.classes_.astype(np.int64))
        atomic.write_json(tmp / "probe.json", info)


def load(directory: Path) -> tuple[LogisticRegression, dict]:
    """The stored probe as a fitted scikit-learn `LogisticRegression` (multi-label: a
    `MultiLabelProbe`), and its metadata."""
    directory = Path(directory)
    for name in ("probe.npz", "probe.json"):
        if not (directory / name).is_file():
            raise ClipprobeError(f"{directory / name} is missing; run `dvc repro train` first")
    info = atomic.read_json(directory / "probe.json", "run `dvc repro -f train`")
    with np.load(directory / "probe.npz", allow_pickle=False) as arrays:
        if not (np.isfinite(arrays["coef"]).all() and np.isfinite(arrays["intercept"]).all()):
            raise ClipprobeError(f"{directory / 'probe.npz'}: the probe's coefficients hold NaN or inf; "
                                 "rerun `dvc repro -f train`")
        if info.get("multi_label"):
            return MultiLabelProbe(arrays["coef"], arrays["intercept"], info["C"], info["max_iter"],
                                   info["n_iter"]), info
        clf = with_coefficients(arrays["coef"], arrays["intercept"], arrays["classes"],
                                C=info["C"], solver="lbfgs", max_iter=info["max_iter"])
    clf.n_iter_ = np.asarray([info["n_iter"]], dtype=np.int32)
    return clf, info


def save_start(clf: LogisticRegression | None, path: Path) -> None:
    """The search's probe at the chosen C, for the refit to start from (no arrays: none)."""
    arrays = {} if clf is None else {"coef": clf.coef_, "intercept": clf.intercept_, "classes": clf.classes_,
                                     "multi_label": isinstance(clf, MultiLabelProbe)}
    _savez(path, **arrays)


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
