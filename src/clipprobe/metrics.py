"""The metrics: each headline metric's name and function, and a stage's test metrics.

Functions are single- or multi-label; the per-class rows behind `dvc plots` are here too.

The registry names each dataset's headline metric from here (not the reverse), so stages that
score read the metric's name from the data's `info.json` and never import the registry.  numpy and
scikit-learn are imported where a metric is computed: the `inputs` stage, which runs on every
`dvc repro`, imports the registry and with it this module's names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Headline metrics, named as the keys of metrics/accuracy.json that hold them.
TOP1 = "top1"
MEAN_PER_CLASS = "mean_per_class_recall"   # the CLIP paper's "mean per class" accuracy
MAP11 = "map11"                            # PASCAL VOC's 11-point interpolated mean average precision
NAMES = (TOP1, MEAN_PER_CLASS, MAP11)


def average_precision_11(y: np.ndarray, scores: np.ndarray) -> float:
    """PASCAL VOC 2007's 11-point interpolated average precision of one class: the mean over
    recall levels 0, 0.1, ..., 1 of the best precision at that recall or above.  Labels are
    1 (present), 0 (absent) or -1 (difficult: neither a hit nor a false alarm, as in VOC's devkit)."""
    import numpy as np

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
    import numpy as np

    return float(np.mean([average_precision_11(y[:, k], scores[:, k]) for k in range(y.shape[1])]) * 100)


def mean_per_class(y_true: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    """Recall averaged over `classes`, in percent: the CLIP paper's "mean per class" accuracy.
    Callers pass the classes present in `y_true`, as scikit-learn's `balanced_accuracy_score`
    does: a class without images has no recall (as 0 it would pull a perfect probe below 100)."""
    from sklearn.metrics import recall_score

    return float(recall_score(y_true, pred, labels=classes, average="macro", zero_division=0) * 100)


def _predicted(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return classes[scores.argmax(axis=1)]


def _top1(y, scores, classes) -> float:
    return float((_predicted(scores, classes) == y).mean() * 100)


def _mean_per_class(y, scores, classes) -> float:
    import numpy as np

    return mean_per_class(y, _predicted(scores, classes), np.unique(y))


def _map11(y, scores, classes) -> float:
    return map11(y, scores)


# name -> (function of (labels, scores [images, classes], classes) in percent, multi-label?)
FUNCTIONS = {TOP1: (_top1, False), MEAN_PER_CLASS: (_mean_per_class, False), MAP11: (_map11, True)}
assert set(FUNCTIONS) == set(NAMES)


def scorer(metric: str):
    """The validation score a C search selects on: (probe, features, labels) -> `metric` in percent
    (None for top-1, the search's own default)."""
    if metric == TOP1:
        return None
    function, multi_label = FUNCTIONS[metric]
    if multi_label:
        return lambda clf, x, y: function(y, clf.decision_function(x), clf.classes_)
    return lambda clf, x, y: function(y, clf.predict_proba(x), clf.classes_)


def metrics(y_true: np.ndarray, scores: np.ndarray, classes: np.ndarray, metric: str = TOP1) -> dict:
    """The headline `metric` (its name and `score`) and, single-label, top-1, top-5 (with more than 5
    classes) and mean per-class recall, in percent; multi-label, the 11-point mAP."""
    from sklearn.metrics import top_k_accuracy_score

    names = [m for m, (_, multi) in FUNCTIONS.items() if multi == (y_true.ndim == 2)]
    out = {m: round(FUNCTIONS[m][0](y_true, scores, classes), 4) for m in names}
    if y_true.ndim == 1 and len(classes) > 5:
        out["top5"] = round(float(top_k_accuracy_score(y_true, scores, k=5, labels=classes) * 100), 4)
    out = {k: out[k] for k in (TOP1, "top5", MEAN_PER_CLASS, MAP11) if k in out}
    return {"metric": metric, "score": out[metric], **out}


def per_class_accuracy(y_true, pred, names: list[str]) -> list[tuple[str, float]]:
    """(class, recall in percent) of each class with test images."""
    return [(name, round(float((pred[y_true == i] == i).mean() * 100), 4))
            for i, name in enumerate(names) if (y_true == i).any()]


def absent_classes(y_true, names: list[str]) -> list[str]:
    """Classes without a test image: no recall is scored for them."""
    return [name for i, name in enumerate(names) if not (y_true == i).any()]
