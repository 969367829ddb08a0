"""The stratified validation split of `C: auto`, for datasets without an official val split.

Its own module so that `prepare` can check the split is possible (before hours of extraction)
without importing the probe.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import train_test_split

from clipprobe.errors import ClipprobeError


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) indices; every class must keep a sample on both sides."""
    classes, counts = np.unique(y, return_counts=True)
    n_val = math.ceil(fraction * len(y))
    need = "C: auto needs a stratified validation split (a sample of each class on both sides), but"
    other = "or set C to a number"
    if counts.min() < 2:
        raise ClipprobeError(f"{need} class {classes[np.argmin(counts)]} has {counts.min()} train sample; raise "
                             f"data.limit_per_class or add images, {other}")
    if n_val < len(classes):
        raise ClipprobeError(f"{need} tune.val_fraction={fraction} gives {n_val} validation samples for "
                             f"{len(classes)} classes; raise tune.val_fraction to at least "
                             f"{math.ceil(len(classes) / len(y) * 1000) / 1000:g}, {other}")
    if len(y) - n_val < len(classes):
        raise ClipprobeError(f"{need} tune.val_fraction={fraction} leaves {len(y) - n_val} training samples for "
                             f"{len(classes)} classes; lower tune.val_fraction to at most "
                             f"{math.floor((len(y) - len(classes)) / len(y) * 1000) / 1000:g}, {other}")
    idx = np.arange(len(y))
    tr, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=y)
    return np.sort(tr), np.sort(val)
