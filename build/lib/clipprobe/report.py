"""Test metrics and the data behind `dvc plots`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import recall_score, top_k_accuracy_score


def metrics(y_true: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict:
    """top-1 and (with more than 5 classes) top-5 accuracy, and mean per-class recall, in percent."""
    pred = classes[np.argmax(scores, axis=1)]
    out = {"top1": round(float(np.mean(pred == y_true) * 100), 4)}
    if len(classes) > 5:
        out["top5"] = round(float(top_k_accuracy_score(y_true, scores, k=5, labels=classes) * 100), 4)
    recall = recall_score(y_true, pred, labels=classes, average="macro", zero_division=0)
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
    rows = []
    for i, name in enumerate(names):
        mask = y_true == i
        rows.append((name, round(float(np.mean(pred[mask] == i) * 100), 4) if mask.any() else 0.0))
    return rows
