"""Data sources and the prepared-split format every later stage reads.

`prepare` turns any source into `data/prepared/`: one Parquet table per split
(`train`, `test`, and `val` where the dataset has an official one) with columns
`id` (index in the source split), `label`, and either `image` (PNG bytes, for
array-backed datasets) or `path` (relative to `info.json`'s `root`), plus
`info.json` with the class names.  Extraction never needs to know the source.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import urllib.error
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipprobe import folders
from clipprobe.errors import ClipprobeError
from clipprobe.params import DATASETS, DataParams

FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
EUROSAT_TEST_FRACTION, EUROSAT_SEED = 0.2, 0


@dataclass
class Split:
    """One split of a source: labels in split order, and how to get each image."""
    labels: np.ndarray
    images: object = None       # array-backed: a sequence whose items are PIL images
    paths: list | None = None   # file-backed: paths relative to `root`
    ids: np.ndarray | None = None


# ---------------------------------------------------------------- torchvision sources

def stage_fashion_mnist(root: Path, sources=FASHION_MNIST_DIRS) -> bool:
    """Unpack local Fashion-MNIST IDX files (from `root` or `sources`) where torchvision looks,
    so nothing is downloaded; False if no complete set was found.

    Debian re-compresses the files, so torchvision's md5 check of the .gz would fail:
    we hand it the unpacked files, which it takes as they are.
    """
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in FASHION_MNIST_FILES):
        return True
    for d in (root, raw, *map(Path, sources)):
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
def _safe_archives():
    """Route torchvision's tar extraction through `safe_extract_tar` (zipfile already
    strips `..` and absolute paths itself)."""
    from torchvision.datasets import utils

    saved = utils._ARCHIVE_EXTRACTORS[".tar"]
    utils._ARCHIVE_EXTRACTORS[".tar"] = safe_extract_tar
    try:
        yield
    finally:
        utils._ARCHIVE_EXTRACTORS[".tar"] = saved


def _torchvision(name: str, root: Path, split: str):
    from torchvision import datasets as tv

    kw = dict(root=str(root), download=True)
    if name == "cifar10":
        return tv.CIFAR10(train=split == "train", **kw)
    if name == "cifar100":
        return tv.CIFAR100(train=split == "train", **kw)
    if name == "mnist":
        return tv.MNIST(train=split == "train", **kw)
    if name == "fashion-mnist":
        stage_fashion_mnist(root)
        return tv.FashionMNIST(train=split == "train", **kw)
    if name == "stl10":
        return tv.STL10(split=split, **kw)
    if name == "food101":
        return tv.Food101(split=split, **kw)
    if name == "flowers102":
        return tv.Flowers102(split=split, **kw)
    if name == "dtd":
        return tv.DTD(split=split, partition=1, **kw)
    if name == "oxford-pets":
        return tv.OxfordIIITPet(split="trainval" if split == "train" else split, **kw)
    raise AssertionError(name)


def _official_splits(name: str) -> tuple[str, ...]:
    return ("train", "val", "test") if name in ("flowers102", "dtd") else ("train", "test")


def _torchvision_split(name: str, root: Path, split: str) -> tuple[Split, list[str]]:
    try:
        with _safe_archives():
            ds = _torchvision(name, root, split)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        if isinstance(e, urllib.error.URLError) or "download" in str(e).lower() or \
                isinstance(e, ConnectionError):
            raise ClipprobeError(
                f"data.name={name}: could not download it into {root} ({e}); connect to the "
                f"internet once, or put the dataset's files under data.root") from None
        raise
    classes = list(ds.classes)
    if hasattr(ds, "_image_files") or hasattr(ds, "_images"):   # file-backed datasets
        files = getattr(ds, "_image_files", None) or ds._images
        return Split(labels=np.asarray(ds._labels), paths=[os.path.relpath(f, root) for f in files]), classes
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels
    return Split(labels=np.asarray(labels), images=ds), classes


def _eurosat(root: Path) -> tuple[dict[str, Split], list[str]]:
    from sklearn.model_selection import train_test_split
    from torchvision import datasets as tv

    try:
        with _safe_archives():
            ds = tv.EuroSAT(root=str(root), download=True)
    except urllib.error.URLError as e:
        raise ClipprobeError(f"data.name=eurosat: could not download it into {root} ({e}); "
                             "connect to the internet once, or put the dataset under data.root") from None
    paths = [os.path.relpath(p, root) for p, _ in ds.samples]
    labels = np.asarray(ds.targets)
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=EUROSAT_TEST_FRACTION, random_state=EUROSAT_SEED,
                              stratify=labels)
    tr, te = np.sort(tr), np.sort(te)
    splits = {s: Split(labels=labels[i], paths=[paths[j] for j in i], ids=i)
              for s, i in (("train", tr), ("test", te))}
    return splits, list(ds.classes)


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
    """Indices of the first n samples of each class, in split order."""
    if n is None:
        return np.arange(len(labels))
    keep, seen = [], {}
    for i, y in enumerate(labels.tolist()):
        if seen.get(y, 0) < n:
            seen[y] = seen.get(y, 0) + 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _table(split: Split, keep: np.ndarray, sha256: dict[str, str] | None) -> pa.Table:
    ids = split.ids if split.ids is not None else np.arange(len(split.labels))
    cols = {"id": pa.array(ids[keep], pa.int64()),
            "label": pa.array(split.labels[keep].astype(np.int64), pa.int64())}
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
    root = Path(p.root)
    if p.name in DATASETS:
        root.mkdir(parents=True, exist_ok=True)
        if p.name == "eurosat":
            splits, classes = _eurosat(root)
            return splits, classes, root, {"split": f"seeded stratified {1 - EUROSAT_TEST_FRACTION:.0%}/"
                                           f"{EUROSAT_TEST_FRACTION:.0%}, seed {EUROSAT_SEED}"}
        splits, classes = {}, None
        for s in _official_splits(p.name):
            splits[s], classes = _torchvision_split(p.name, root, s)
        return splits, classes, root, {"split": "official"}
    root = Path(p.name)
    splits, classes = _list_image_folder(root)
    return splits, classes, root, {"split": "train/ and test/ folders"}


def _require_images(p: DataParams, root: Path, keeps: dict[str, np.ndarray]) -> None:
    """Stop unless every split has an image to use (an empty test/ would fail only in evaluate)."""
    for s, keep in keeps.items():
        if not len(keep):
            if p.name in DATASETS:
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
    if p.name not in DATASETS:  # the user's own files: check every image before any heavy work
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
        counts = np.bincount(sp.labels[keeps[s]], minlength=len(classes))
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
    present = set(pq.read_table(Path(prepared) / f"{split}.parquet", columns=["label"]).column("label").to_pylist())
    return [c for i, c in enumerate(classes) if i not in present]


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
