"""Test metrics and the data behind `dvc plots`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import recall_score, top_k_accuracy_score


def metrics(y_true: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict:
    """top-1 and (with more than 5 classes) top-5 accuracy, and mean per-class recall, in percent.

    The recall is averaged over the classes present in `y_true`, as scikit-learn's
    `balanced_accuracy_score` does: a class with no test images has no recall to count (as 0 it
    would pull a perfect probe below 100)."""
    pred = classes[np.argmax(scores, axis=1)]
    out = {"top1": round(float(np.mean(pred == y_true) * 100), 4)}
    if len(classes) > 5:
        out["top5"] = round(float(top_k_accuracy_score(y_true, scores, k=5, labels=classes) * 100), 4)
    recall = recall_score(y_true, pred, labels=np.unique(y_true), average="macro", zero_division=0)
    out["mean_per_class_recall"] = round(float(recall * 100), 4)
    return out


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def per_class_accuracy(y_true, pred, names: list[str]) -> list[tuple[str, float]]:
    """(class, recall in percent) of each class with test images."""
    return [(name, round(float(np.mean(pred[y_true == i] == i) * 100), 4))
            for i, name in enumerate(names) if (y_true == i).any()]


def absent_classes(y_true, names: list[str]) -> list[str]:
    """Classes without a test image: no recall is scored for them."""
    return [name for i, name in enumerate(names) if not (y_true == i).any()]
