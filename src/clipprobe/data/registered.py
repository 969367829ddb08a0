"""Registry datasets loaded as the CLIP paper splits them.

Torchvision's class for each (or a reader
of `data.readers`), what is on disk read first and downloaded only if missing, the paper's splits
carved where the source has fewer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from clipprobe import atomic
from clipprobe.data import root as data_root
from clipprobe.data.downloads import (
    stage_fashion_mnist,
    torchvision_downloads,
    unavailable,
)
from clipprobe.data.readers import READERS, pcam
from clipprobe.data.registry import Dataset
from clipprobe.data.sources import Split, subset
from clipprobe.errors import ClipprobeError


def _open(entry: Dataset, root: Path, kwargs: Mapping):
    """The loader's source split for `kwargs`: a torchvision dataset, or (Split, classes) from a reader.

    What is on disk is read first; only if that fails does torchvision download (some of its
    classes, VOC's, would download again with download=True even when the files are there)."""
    kw = {**entry.kwargs, **kwargs}
    try:
        if entry.loader in READERS:
            return READERS[entry.loader](root, **kw)
        from torchvision import datasets as tv

        cls = getattr(tv, entry.loader)

        def build(r: Path, download: bool):
            if entry.loader == "FashionMNIST":
                stage_fashion_mnist(r)
            return cls(root=str(r / entry.subdir), download=download, **kw)

        with torchvision_downloads():   # ImageNet extracts its archives on first use
            if entry.download is not None:   # not downloadable: the files on disk, or what to put where
                return cls(root=str(root / entry.subdir), **kw)
            return data_root.fetch(root, entry.name, build)   # once per root, under a lock, whole or not at all
    except ClipprobeError:
        raise
    except OSError as e:
        if e.errno in atomic.FULL:   # downloading or unpacking into data.root
            raise atomic.disk_full(root, fix="free space there, or set data.root to a folder on a larger disk") \
                from None
        raise ClipprobeError(unavailable(entry, root, e)) from None
    except Exception as e:  # torchvision raises RuntimeError, OSError, ValueError, ... for missing files
        raise ClipprobeError(unavailable(entry, root, e)) from None


def _to_split(entry: Dataset, ds, root: Path) -> tuple[Split, list[str]]:
    """A torchvision dataset's labels and images (file paths where it has files), and class names."""
    from torchvision import datasets as tv

    if isinstance(ds, tv.VOCDetection):
        paths = [os.path.relpath(f, root) for f in ds.images]
        return Split(labels=_voc_labels(ds.annotations, entry.classes), paths=paths), list(entry.classes)
    if isinstance(ds, tv.PCAM):
        return pcam(ds), list(entry.classes)
    files = None
    if isinstance(ds, tv.Caltech101):   # it keeps class and index per image, not paths
        files = [os.path.join(ds.root, "101_ObjectCategories", ds.categories[y], f"image_{i:04d}.jpg")
                 for i, y in zip(ds.index, ds.y)]
        labels = ds.y
    elif hasattr(ds, "_image_files") or hasattr(ds, "_images"):
        files, labels = getattr(ds, "_image_files", None) or ds._images, ds._labels
    elif hasattr(ds, "_samples") or hasattr(ds, "samples"):
        samples = getattr(ds, "_samples", None) or ds.samples
        files, labels = [f for f, _ in samples], [y for _, y in samples]
    else:   # array-backed
        labels = getattr(ds, "targets", None)
        labels = ds.labels if labels is None else labels
    own = ds.categories if isinstance(ds, tv.Caltech101) else getattr(ds, "classes", None)
    classes = list(entry.classes) if entry.classes is not None else \
        [c if isinstance(c, str) else ", ".join(c) for c in own]   # ImageNet: a tuple of synonyms per class
    labels = np.asarray(labels, dtype=np.int64)
    if entry.label_values is not None:
        labels = np.searchsorted(np.asarray(entry.label_values), labels)
    if files is None:
        return Split(labels=labels, images=ds), classes
    return Split(labels=labels, paths=[os.path.relpath(f, root) for f in files]), classes


def _voc_labels(annotations: list[str], classes: tuple[str, ...]) -> np.ndarray:
    """Per image and class: 1 with a non-difficult object of the class, -1 with difficult ones only
    (VOC's evaluation ignores these), 0 without."""
    from xml.etree.ElementTree import parse

    index = {c: i for i, c in enumerate(classes)}
    labels = np.zeros((len(annotations), len(classes)), np.int8)
    for row, path in enumerate(annotations):
        for obj in parse(path).getroot().iter("object"):
            k = index[obj.findtext("name").strip()]
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            if not difficult:
                labels[row, k] = 1
            elif labels[row, k] == 0:
                labels[row, k] = -1
    return labels


def _per_class(pool: Split, n_train: int, n_test: int | None, seed: int) -> dict[str, Split]:
    """Train and test drawn per class from one pool (sorted by path first: file listings are not
    ordered); each class keeps at least one test image, and test takes the rest where n_test is None.
    Ids are positions in the sorted pool."""
    if pool.paths is not None:
        pool = subset(pool, np.asarray(sorted(range(len(pool.paths)), key=pool.paths.__getitem__), np.int64))
        pool.ids = np.arange(len(pool.labels))   # ids: positions in the sorted pool
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(pool.labels):
        idx = rng.permutation(np.flatnonzero(pool.labels == k))
        n = min(n_train, len(idx) - 1)
        train.append(idx[:n])
        test.append(idx[n:] if n_test is None else idx[n:n + n_test])
    return {"train": subset(pool, np.sort(np.concatenate(train))),
            "test": subset(pool, np.sort(np.concatenate(test)))}


def load(entry: Dataset, root: Path) -> tuple[dict[str, Split], list[str]]:
    """The paper's splits of a registry entry, as the entry maps them onto its loader."""
    splits, classes = {}, None
    for s, kwargs in entry.splits.items():
        ds = _open(entry, root, kwargs)
        split, names = ds if isinstance(ds, tuple) else _to_split(entry, ds, root)
        names = names or list(entry.classes)
        if classes is not None and names != classes:   # torchvision numbers some splits' classes on their own
            raise ClipprobeError(f"data.name={entry.name}: its {s} split in {root} has other classes than its "
                                 f"train split ({len(names)} against {len(classes)}); the files are incomplete: "
                                 "delete them to download again")
        splits[s], classes = split, names
    if entry.per_class:
        splits = _per_class(splits["train"], *entry.per_class, entry.seed)
    for s, n in entry.sample.items():
        if len(splits[s].labels) > n:
            rng = np.random.default_rng(entry.seed)
            splits[s] = subset(splits[s], np.sort(rng.choice(len(splits[s].labels), n, replace=False)))
    return {s: splits[s] for s in entry.paper_splits}, classes
