"""A source of labelled images as `prepare` reads it, whatever loader made it.

Per split: the labels and where each image is (array-backed items, files under a root, or, for
indexed sources, the columns that locate it in the source's own files), the class names, and
whether it is a registry dataset (`Source.named`), which `prepare` writes into `info.json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Split:
    """One split of a source: labels in split order, and how to get each image."""
    labels: np.ndarray
    images: object = None       # array-backed: a sequence whose items are PIL images
    paths: list | None = None   # file-backed: paths relative to `root`
    ids: np.ndarray | None = None
    columns: dict | None = None  # indexed: prepared-table columns locating each image (see data.located)


@dataclass
class Source:
    """What `prepare` reads: the splits, the class names, the root image paths are relative to,
    what to record of the split mapping (`split`, `split_source`, `metric`, `multi_label`), and
    whether this is a registry dataset (identified by its params) or the user's own files."""
    splits: dict[str, Split]
    classes: list[str]
    root: Path
    provenance: dict
    named: bool
    skipped: list[str] = field(default_factory=list)   # damaged samples an indexed source left out
    prompts: dict = field(default_factory=dict)        # the source's own zero-shot templates, where it has them


class Take:
    """Items `idx` of an indexable source."""

    def __init__(self, source, idx: np.ndarray):
        self.source, self.idx = source, idx

    def __getitem__(self, i: int):
        return self.source[int(self.idx[i])]


def subset(split: Split, idx: np.ndarray) -> Split:
    ids = split.ids if split.ids is not None else np.arange(len(split.labels))
    return Split(labels=split.labels[idx], ids=ids[idx],
                 images=None if split.images is None else Take(split.images, idx),
                 paths=None if split.paths is None else [split.paths[i] for i in idx.tolist()],
                 columns=None if split.columns is None else {k: take(v, idx) for k, v in split.columns.items()})


def take(values, idx: np.ndarray):
    """Items `idx` of a column: an array indexed as one, a list as a list."""
    return values[idx] if isinstance(values, np.ndarray) else [values[i] for i in idx.tolist()]
