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
