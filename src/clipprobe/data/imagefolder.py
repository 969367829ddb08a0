"""A user's ImageFolder as a source, and the check that every image decodes.

`train/<class>/*` and `test/<class>/*` (classes = the sorted
subfolders of train/, walked by `data.folders`), and the check that every image decodes, which
also gives each file's SHA-256 for the prepared table."""

from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from clipprobe.data import folders
from clipprobe.data.prepared import MAX_PIXELS, over_limit, pixel_limit_error
from clipprobe.data.sources import Split
from clipprobe.errors import ClipprobeError


def load(root: Path) -> tuple[dict[str, Split], list[str]]:
    train, test = root / "train", root / "test"
    for d in (train, test):
        if not d.is_dir():
            raise ClipprobeError(f"data.name={root}: {d} is missing; an ImageFolder root needs "
                                 "train/<class>/... and test/<class>/...")
    classes = folders.class_dirs(train)
    if len(classes) < 2:
        raise ClipprobeError(f"{train}: found {len(classes)} class folder(s); a probe needs at "
                             "least 2 classes, one subfolder each")
    extra = sorted(set(folders.class_dirs(test)) - set(classes))
    if extra:
        raise ClipprobeError(f"{test}: classes {', '.join(extra)} are not in {train}; test/ must "
                             "use the class folders of train/")
    splits = {}
    for name, d in (("train", train), ("test", test)):
        paths, labels = [], []
        for label, (cls, files) in enumerate(folders.files_by_class(d, classes).items()):
            if not files and name == "train":
                raise ClipprobeError(f"{d / cls}: empty class folder; add images or remove the folder")
            paths += [os.path.relpath(f.path, root) for f in files]
            labels += [label] * len(files)
        splits[name] = Split(labels=np.asarray(labels, dtype=np.int64), paths=paths)
    return splits, classes


def _read_image(path: Path, max_pixels: int | None = MAX_PIXELS) -> tuple[str | None, str, tuple[int, int] | None]:
    """(why the image cannot be fully decoded, or None; the SHA-256 of the file's bytes; its size
    where it has more than `max_pixels`, refused before decoding, else None)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"{e.__class__.__name__}: {e}", "", None
    error = too_large = None
    try:
        with Image.open(io.BytesIO(data)) as im:
            if over_limit(im, max_pixels):
                too_large = im.size
            else:
                im.load()
    except Exception as e:  # PIL raises many types for bad files
        error = f"{e.__class__.__name__}: {e}"
    return error, hashlib.sha256(data).hexdigest(), too_large


def read_images(root: Path, paths: list[str], workers: int | None = None,
                max_pixels: int | None = MAX_PIXELS) -> tuple[list[str], list[str]]:
    """The paths (relative to root) whose image cannot be fully decoded, and every file's
    SHA-256 (its content, which the prepared table records beside its path). An image of more
    than `max_pixels` stops here, one line naming it, its pixel count and data.max_pixels."""
    from concurrent.futures import ProcessPoolExecutor

    full = [root / p for p in paths]
    read = functools.partial(_read_image, max_pixels=max_pixels)
    if len(full) < 256:
        results = [read(p) for p in full]
    else:
        with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
            results = list(pool.map(read, full, chunksize=64))
    too_large = [(p, size) for p, (_, _, size) in zip(full, results) if size is not None]
    if too_large:
        raise pixel_limit_error(*too_large[0], max_pixels, len(too_large) - 1,
                                max(w * h for _, (w, h) in too_large))
    return [p for p, (error, _, _) in zip(paths, results) if error is not None], [h for _, h, _ in results]
