"""Test metrics and the data behind `dvc plots`."""

from __future__ import annotations

import csv
import io
import json
import os
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


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name, then rename: a killed stage leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, newline="")
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    _write_atomic(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    _write_atomic(path, buf.getvalue())


def per_class_accuracy(y_true, pred, names: list[str]) -> list[tuple[str, float]]:
    rows = []
    for i, name in enumerate(names):
        mask = y_true == i
        rows.append((name, round(float(np.mean(pred[mask] == i) * 100), 4) if mask.any() else 0.0))
    return rows
