"""Data sources and the prepared-split format every later stage reads.

`prepare` turns any source into `data/prepared/`: one Parquet table per split
(`train`, `test`, and `val` where the dataset has an official one) with columns
`id` (index in the source split), `label`, and either `image` (PNG bytes, for
array-backed datasets) or `path` (relative to `info.json`'s `root`), plus
`info.json` with the class names.  Extraction never needs to know the source.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import urllib.error
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipprobe import data_root, folders, registry
from clipprobe.errors import ClipprobeError
from clipprobe.labels import from_arrow, positives, to_arrow
from clipprobe.params import DataParams

FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DOWNLOAD_TIMEOUT_S = 60   # per socket operation: a network that drops packets fails, not hangs


@dataclass
class Split:
    """One split of a source: labels in split order, and how to get each image."""
    labels: np.ndarray
    images: object = None       # array-backed: a sequence whose items are PIL images
    paths: list | None = None   # file-backed: paths relative to `root`
    ids: np.ndarray | None = None


# ---------------------------------------------------------------- registered datasets

def stage_fashion_mnist(root: Path, sources=None) -> bool:
    """Unpack local Fashion-MNIST IDX files (from `root` or `sources`) where torchvision looks,
    so nothing is downloaded; False if no complete set was found.

    Debian re-compresses the files, so torchvision's md5 check of the .gz would fail:
    we hand it the unpacked files, which it takes as they are.
    """
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in FASHION_MNIST_FILES):
        return True
    for d in (root, raw, *map(Path, FASHION_MNIST_DIRS if sources is None else sources)):
        found = {}
        for f in FASHION_MNIST_FILES:
            for cand in (d / f, d / f"{f}.gz"):
                if cand.is_file():
                    found[f] = cand
        if len(found) == len(FASHION_MNIST_FILES):
            raw.mkdir(parents=True, exist_ok=True)
            for f, src in found.items():
                if src == raw / f:
                    continue
                tmp = raw / f".{f}.tmp"
                with (gzip.open(src) if src.suffix == ".gz" else open(src, "rb")) as i, open(tmp, "wb") as o:
                    shutil.copyfileobj(i, o)
                os.replace(tmp, raw / f)
            return True
    return False


def safe_extract_tar(from_path, to_path, compression=None) -> None:
    """Extract a tar archive only if every member stays inside `to_path`.

    torchvision's extractor trusts archives fully on Python < 3.14; this one refuses
    absolute paths, `..`, links that point outside, and device files.
    """
    dest = Path(to_path).resolve()
    with tarfile.open(from_path, f"r:{compression[1:]}" if compression else "r") as tar:
        for m in tar.getmembers():
            target = (dest / m.name).resolve()
            link_ok = not (m.issym() or m.islnk()) or \
                (dest / Path(m.name).parent / m.linkname).resolve().is_relative_to(dest)
            if not target.is_relative_to(dest) or not link_ok or m.isdev():
                raise ClipprobeError(f"{from_path}: archive member {m.name!r} would be written outside "
                                     f"{dest}; refusing to extract it (delete the file and download again)")
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


@contextmanager
def _downloads():
    """torchvision's downloads as clipprobe runs them: tar archives extracted by `safe_extract_tar`
    (zipfile already strips `..` and absolute paths itself), and a socket timeout, so that a
    network that drops packets fails within a minute instead of hanging."""
    from torchvision.datasets import utils

    saved, timeout = utils._ARCHIVE_EXTRACTORS[".tar"], socket.getdefaulttimeout()
    utils._ARCHIVE_EXTRACTORS[".tar"] = safe_extract_tar
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        utils._ARCHIVE_EXTRACTORS[".tar"] = saved
        socket.setdefaulttimeout(timeout)


def _unavailable(entry: registry.Dataset, root: Path, e: Exception) -> str:
    """One line for a dataset that cannot be loaded: what to download or where to put it."""
    text = str(e).strip()
    why = type(e).__name__ + (f": {text.splitlines()[0]}" if text else "")
    head = f"data.name={entry.name}: "
    if entry.download is not None:
        return head + f"not found in {root} ({why}); {entry.download.format(root=root)}"
    network = isinstance(e, (urllib.error.URLError, ConnectionError, socket.timeout)) or "download" in text.lower()
    if network:
        return head + (f"could not download it into {root} ({why}); connect to the internet once (torchvision's "
                       f"{entry.loader} downloads it), or put the files it downloads under {root}")
    return head + (f"cannot read it from {root} ({why}); its files there are incomplete or corrupt: delete them "
                   "to download again")


def _open(entry: registry.Dataset, root: Path, kwargs: Mapping):
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

        with _downloads():   # ImageNet extracts its archives on first use
            if entry.download is not None:   # not downloadable: the files on disk, or what to put where
                return cls(root=str(root / entry.subdir), **kw)
            return data_root.fetch(root, entry.name, build)   # once per root, under a lock, whole or not at all
    except ClipprobeError:
        raise
    except Exception as e:  # torchvision raises RuntimeError, OSError, ValueError, ... for missing files
        raise ClipprobeError(_unavailable(entry, root, e)) from None


def _to_split(entry: registry.Dataset, ds, root: Path) -> tuple[Split, list[str]]:
    """A torchvision dataset's labels and images (file paths where it has files), and class names."""
    from torchvision import datasets as tv

    if isinstance(ds, tv.VOCDetection):
        paths = [os.path.relpath(f, root) for f in ds.images]
        return Split(labels=_voc_labels(ds.annotations, entry.classes), paths=paths), list(entry.classes)
    if isinstance(ds, tv.PCAM):
        return _pcam(ds), list(entry.classes)
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


class _H5Images:
    """PCAM's images: items (PIL image, None) like a torchvision dataset's, from one open HDF5 file."""

    def __init__(self, path: Path):
        self.path, self._file = path, None

    def __getitem__(self, i: int):
        if self._file is None:
            import h5py
            self._file = h5py.File(self.path, "r")
        return Image.fromarray(self._file["x"][i]), None


def _pcam(ds) -> Split:
    import h5py

    files = ds._FILES[ds._split]
    with h5py.File(ds._base_folder / files["targets"][0], "r") as f:
        labels = np.asarray(f["y"][:, 0, 0, 0], dtype=np.int64)
    return Split(labels=labels, images=_H5Images(ds._base_folder / files["images"][0]))


def _fer2013(root: Path, usage: str) -> tuple[Split, list[str]]:
    """FER2013's rows of one Usage (Training, PublicTest, PrivateTest) from the challenge's CSV.

    torchvision's FER2013 merges PublicTest and PrivateTest into one test split; the paper
    keeps them apart, so this reads the file itself (same files as torchvision)."""
    base = root / "fer2013"
    path = next((base / f for f in ("fer2013.csv", "icml_face_data.csv") if (base / f).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"neither fer2013.csv nor icml_face_data.csv in {base}")
    labels, pixels = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}   # icml_face_data.csv's keys start with a space
            if row["Usage"] == usage:
                labels.append(int(row["emotion"]))
                pixels.append(row["pixels"])
    if not labels:
        raise ValueError(f"{path} has no rows with Usage {usage}")
    images = _Pixels(pixels)
    return Split(labels=np.asarray(labels, np.int64), images=images), None


class _Pixels:
    """FER2013's 48x48 grey images, decoded from the CSV's pixel strings when asked for."""

    def __init__(self, rows: list[str]):
        self.rows = rows

    def __getitem__(self, i: int):
        return Image.fromarray(np.asarray(self.rows[i].split(), np.uint8).reshape(48, 48)), None


READERS = {"fer2013": _fer2013}   # loaders that are not torchvision classes, by registry.Dataset.loader


class _Take:
    """Items `idx` of an indexable source."""

    def __init__(self, source, idx: np.ndarray):
        self.source, self.idx = source, idx

    def __getitem__(self, i: int):
        return self.source[int(self.idx[i])]


def _subset(split: Split, idx: np.ndarray) -> Split:
    ids = split.ids if split.ids is not None else np.arange(len(split.labels))
    return Split(labels=split.labels[idx], ids=ids[idx],
                 images=None if split.images is None else _Take(split.images, idx),
                 paths=None if split.paths is None else [split.paths[i] for i in idx.tolist()])


def _per_class(pool: Split, n_train: int, n_test: int | None, seed: int) -> dict[str, Split]:
    """Train and test drawn per class from one pool (sorted by path first: file listings are not
    ordered); each class keeps at least one test image, and test takes the rest where n_test is None.
    Ids are positions in the sorted pool."""
    if pool.paths is not None:
        pool = _subset(pool, np.asarray(sorted(range(len(pool.paths)), key=pool.paths.__getitem__), np.int64))
        pool.ids = np.arange(len(pool.labels))   # ids: positions in the sorted pool
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(pool.labels):
        idx = rng.permutation(np.flatnonzero(pool.labels == k))
        n = min(n_train, len(idx) - 1)
        train.append(idx[:n])
        test.append(idx[n:] if n_test is None else idx[n:n + n_test])
    return {"train": _subset(pool, np.sort(np.concatenate(train))),
            "test": _subset(pool, np.sort(np.concatenate(test)))}


def _registered(entry: registry.Dataset, root: Path) -> tuple[dict[str, Split], list[str]]:
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
            splits[s] = _subset(splits[s], np.sort(rng.choice(len(splits[s].labels), n, replace=False)))
    return {s: splits[s] for s in entry.paper_splits}, classes


# ---------------------------------------------------------------- ImageFolder sources

def _list_image_folder(root: Path) -> tuple[dict[str, Split], list[str]]:
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


def _read_image(path: Path) -> tuple[str | None, str]:
    """(why the image cannot be fully decoded, or None; the SHA-256 of the file's bytes)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"{e.__class__.__name__}: {e}", ""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        error = None
    except Exception as e:  # PIL raises many types for bad files
        error = f"{e.__class__.__name__}: {e}"
    return error, hashlib.sha256(data).hexdigest()


def read_images(root: Path, paths: list[str], workers: int | None = None) -> tuple[list[str], list[str]]:
    """The paths (relative to root) whose image cannot be fully decoded, and every file's
    SHA-256 (its content, which the prepared table records beside its path)."""
    from concurrent.futures import ProcessPoolExecutor

    full = [root / p for p in paths]
    if len(full) < 256:
        results = [_read_image(p) for p in full]
    else:
        with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
            results = list(pool.map(_read_image, full, chunksize=64))
    return [p for p, (error, _) in zip(paths, results) if error is not None], [h for _, h in results]


# ---------------------------------------------------------------- prepare

def _limit(labels: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the first n samples of each class, in split order (multi-label: an image is
    kept while one of its classes has fewer than n)."""
    if n is None:
        return np.arange(len(labels))
    keep, seen = [], {}
    for i, y in enumerate(labels.tolist()):
        present = np.flatnonzero(np.asarray(y) == 1).tolist() if labels.ndim == 2 else [y]
        if any(seen.get(k, 0) < n for k in present):
            for k in present:
                seen[k] = seen.get(k, 0) + 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _table(split: Split, keep: np.ndarray, sha256: dict[str, str] | None) -> pa.Table:
    ids = split.ids if split.ids is not None else np.arange(len(split.labels))
    cols = {"id": pa.array(ids[keep], pa.int64()),
            "label": to_arrow(split.labels[keep])}
    if split.paths is not None:
        cols["path"] = pa.array([split.paths[i] for i in keep.tolist()], pa.string())
        if sha256 is not None:  # a file's new content under the same name changes the table
            cols["sha256"] = pa.array([sha256[split.paths[i]] for i in keep.tolist()], pa.string())
    else:
        cols["image"] = pa.array([_png(split.images[i][0]) for i in keep.tolist()], pa.binary())
    return pa.table(cols)


def load_source(p: DataParams) -> tuple[dict[str, Split], list[str], Path, dict]:
    """The splits of `data.name`, its class names, the root image paths are relative to,
    and provenance to record."""
    entry = registry.get(p.name)
    if entry is not None:
        root = data_root.resolve(p.root)
        root.mkdir(parents=True, exist_ok=True)
        splits, classes = _registered(entry, root)
        return splits, classes, root, {"split": entry.split_text(), "split_source": entry.split_source,
                                       "metric": entry.metric, "multi_label": entry.multi_label}
    root = Path(p.name)
    splits, classes = _list_image_folder(root)
    return splits, classes, root, {"split": "train/ and test/ folders", "metric": registry.TOP1,
                                   "multi_label": False}


def _require_images(p: DataParams, root: Path, keeps: dict[str, np.ndarray]) -> None:
    """Stop unless every split has an image to use (an empty test/ would fail only in evaluate)."""
    for s, keep in keeps.items():
        if not len(keep):
            if registry.get(p.name) is not None:
                raise ClipprobeError(f"data.name={p.name}: its {s} split in {root} holds no images; delete "
                                     f"the dataset's files under data.root={p.root} to fetch them again")
            raise ClipprobeError(f"{root / s}: no usable images; put {s} images in {root / s}/<class>/ "
                                 "(the class folders of train/)")


def prepare(p: DataParams, out: Path) -> dict:
    """Write the prepared splits of `p` into `out` (replaced atomically) and return its info."""
    splits, classes, root, provenance = load_source(p)
    skipped = []
    keeps = {s: _limit(sp.labels, p.limit_per_class) for s, sp in splits.items()}
    _require_images(p, root, keeps)
    sha256 = {}
    if registry.get(p.name) is None:  # the user's own files: check every image before any heavy work
        bad = {}
        for s, sp in splits.items():
            paths = [sp.paths[i] for i in keeps[s].tolist()]
            unreadable, digests = read_images(root, paths)
            bad[s], sha256[s] = set(unreadable), dict(zip(paths, digests))
        skipped = sorted(set().union(*bad.values()))
        if skipped and not p.skip_corrupt:
            more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
            raise ClipprobeError(f"{len(skipped)} unreadable image(s) in {root}: {', '.join(skipped[:20])}{more}; "
                                 "fix or delete them, or set data.skip_corrupt: true to skip them")
        for s, sp in splits.items():
            keeps[s] = np.asarray([i for i in keeps[s].tolist() if sp.paths[i] not in bad[s]], np.int64)
    for s, sp in splits.items():
        counts = positives(sp.labels[keeps[s]], len(classes))
        if s == "train" and (counts == 0).any():
            empty = [classes[i] for i in np.flatnonzero(counts == 0)]
            raise ClipprobeError(f"data.name={p.name}: no usable train images for class(es) "
                                 f"{', '.join(empty[:10])}; add images or remove the class")
    _require_images(p, root, keeps)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for s, sp in splits.items():
        pq.write_table(_table(sp, keeps[s], sha256.get(s)), tmp / f"{s}.parquet")
    info = {"dataset": p.name, "root": str(root.resolve()), "classes": classes,
            "splits": {s: int(len(k)) for s, k in keeps.items()},
            "limit_per_class": p.limit_per_class, "skipped": skipped, **provenance}
    (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return info


# ---------------------------------------------------------------- reading prepared data

def read_info(prepared: Path) -> dict:
    path = Path(prepared) / "info.json"
    if not path.is_file():
        raise ClipprobeError(f"{path} is missing; run `dvc repro prepare` first")
    return json.loads(path.read_text())


def read_split(prepared: Path, split: str) -> pa.Table:
    return pq.read_table(Path(prepared) / f"{split}.parquet")


def classes_without_images(prepared: Path, split: str, classes: list[str]) -> list[str]:
    labels = from_arrow(pq.read_table(Path(prepared) / f"{split}.parquet", columns=["label"]).column("label"))
    return [c for c, n in zip(classes, positives(labels, len(classes))) if n == 0]


def split_rows(prepared: Path, split: str) -> int:
    return pq.ParquetFile(Path(prepared) / f"{split}.parquet").metadata.num_rows


def iter_split(prepared: Path, split: str, rows: int):
    """The split's rows as consecutive tables of `rows` rows (the last may be shorter), read
    as a stream so that memory follows `rows`, not the size of the split."""
    f = pq.ParquetFile(Path(prepared) / f"{split}.parquet")
    pending, n = [], 0
    for batch in f.iter_batches(batch_size=rows):
        pending.append(batch)
        n += batch.num_rows
        while n >= rows:
            table = pa.Table.from_batches(pending, f.schema_arrow)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, n = rest.to_batches(), rest.num_rows
    if n:
        yield pa.Table.from_batches(pending, f.schema_arrow)


# Pillow opens 16-bit grayscale as I;16 (some versions and formats: I, 32-bit integers holding 0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(im: Image.Image) -> Image.Image:
    """The image as 8-bit RGB, as a viewer shows it: 16-bit grayscale scaled by 255/65535
    (`convert("RGB")` clips every value above 255, which turns most such images white);
    grayscale and palette images become RGB."""
    if im.mode in SIXTEEN_BIT_MODES:
        scaled = np.rint(np.asarray(im, dtype=np.float64) / 257)  # 65535 / 255 = 257
        im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


class SplitImages:
    """A map-style dataset over a prepared split: (transformed image, row index)."""

    def __init__(self, table: pa.Table, root: str | Path, transform):
        self.root = Path(root)
        self.transform = transform
        self.column = "image" if "image" in table.column_names else "path"
        self.items = table.column(self.column).to_pylist()
        self.ids = table.column("id").to_pylist() if "id" in table.column_names else range(len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def open(self, i: int) -> Image.Image:
        item = self.items[i]
        src = io.BytesIO(item) if self.column == "image" else self.root / item
        try:
            with Image.open(src) as im:
                return to_rgb(im)
        except Exception as e:
            where = self.root / item if self.column == "path" else f"image id {self.ids[i]}"
            raise ClipprobeError(f"{where}: cannot decode image ({e}); rerun prepare, or set "
                                 "data.skip_corrupt: true") from None

    def __getitem__(self, i: int):
        return self.transform(self.open(i)), i
