"""Dataset downloads as clipprobe runs them, and what to do when one cannot be had.

torchvision's downloads, with tar archives extracted only when every member stays inside the data root and a socket timeout so that a dropped network fails instead of hanging;
Debian's Fashion-MNIST files staged where torchvision looks; one line for a dataset that cannot be had."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import tarfile
import urllib.error
from contextlib import contextmanager
from pathlib import Path

from clipprobe.data.registry import Dataset
from clipprobe.errors import ClipprobeError

FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DOWNLOAD_TIMEOUT_S = 60   # per socket operation: a network that drops packets fails, not hangs


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
                try:
                    with (gzip.open(src) if src.suffix == ".gz" else open(src, "rb")) as i, open(tmp, "wb") as o:
                        shutil.copyfileobj(i, o)
                except OSError:   # a full disk: no partial file left where the next run looks
                    tmp.unlink(missing_ok=True)
                    raise
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
def torchvision_downloads():
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


def unavailable(entry: Dataset, root: Path, e: Exception) -> str:
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
