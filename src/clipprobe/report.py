"""Test metrics, the headline metric a C search selects on, and the data behind `dvc plots`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import recall_score, top_k_accuracy_score

from clipprobe import atomic
from clipprobe.registry import MAP11, MEAN_PER_CLASS, TOP1


def average_precision_11(y: np.ndarray, scores: np.ndarray) -> float:
    """PASCAL VOC 2007's 11-point interpolated average precision of one class: the mean over
    recall levels 0, 0.1, ..., 1 of the best precision at that recall or above.  Labels are
    1 (present), 0 (absent) or -1 (difficult: neither a hit nor a false alarm, as in VOC's devkit)."""
    order = np.argsort(-scores, kind="stable")
    hit = np.cumsum(y[order] == 1)
    false_alarm = np.cumsum(y[order] == 0)
    n_pos = hit[-1] if len(hit) else 0
    if n_pos == 0:
        return 0.0
    recall = hit / n_pos
    precision = hit / np.maximum(hit + false_alarm, 1)
    return float(np.mean([precision[recall >= t].max(initial=0.0) for t in np.linspace(0, 1, 11)]))


def map11(y: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes of `average_precision_11`, in percent ([n, classes] labels and scores)."""
    return float(np.mean([average_precision_11(y[:, k], scores[:, k]) for k in range(y.shape[1])]) * 100)


def mean_per_class(y_true: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    """Recall averaged over `classes`, in percent: the CLIP paper's "mean per class" accuracy.
    Callers pass the classes present in `y_true`, as scikit-learn's `balanced_accuracy_score`
    does: a class without images has no recall (as 0 it would pull a perfect probe below 100)."""
    return float(recall_score(y_true, pred, labels=classes, average="macro", zero_division=0) * 100)


def scorer(metric: str):
    """The validation score a C search selects on: (probe, features, labels) -> `metric` in percent."""
    if metric == TOP1:
        return None   # probe.search_C's default: validation top-1
    if metric == MEAN_PER_CLASS:
        return lambda clf, x, y: mean_per_class(y, clf.predict(x), np.unique(y))
    if metric == MAP11:
        return lambda clf, x, y: map11(y, clf.decision_function(x))
    raise ValueError(metric)


def metrics(y_true: np.ndarray, scores: np.ndarray, classes: np.ndarray, metric: str = TOP1) -> dict:
    """The headline `metric` (its name and `score`) and, single-label, top-1, top-5 (with more than 5
    classes) and mean per-class recall, in percent; multi-label, the 11-point mAP."""
    if y_true.ndim == 2:
        out = {MAP11: round(map11(y_true, scores), 4)}
    else:
        pred = classes[np.argmax(scores, axis=1)]
        out = {TOP1: round(float(np.mean(pred == y_true) * 100), 4)}
        if len(classes) > 5:
            out["top5"] = round(float(top_k_accuracy_score(y_true, scores, k=5, labels=classes) * 100), 4)
        out[MEAN_PER_CLASS] = round(mean_per_class(y_true, pred, np.unique(y_true)), 4)
    return {"metric": metric, "score": out[metric], **out}


def write_json(path: Path, data: dict) -> None:
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic.write_text(path, buf.getvalue())


def per_class_accuracy(y_true, pred, names: list[str]) -> list[tuple[str, float]]:
    """(class, recall in percent) of each class with test images."""
    return [(name, round(float(np.mean(pred[y_true == i] == i) * 100), 4))
            for i, name in enumerate(names) if (y_true == i).any()]


def absent_classes(y_true, names: list[str]) -> list[str]:
    """Classes without a test image: no recall is scored for them."""
    return [name for i, name in enumerate(names) if not (y_true == i).any()]
