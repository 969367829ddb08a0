"""Registry loaders that are not torchvision classes: FER2013's CSV, PCAM's HDF5 images.

FER2013 keeps its three Usage splits apart (torchvision merges two)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from clipprobe.data.sources import Split


class H5Images:
    """PCAM's images: items (PIL image, None) like a torchvision dataset's, from one open HDF5 file."""

    def __init__(self, path: Path):
        self.path, self._file = path, None

    def __getitem__(self, i: int):
        if self._file is None:
            import h5py
            self._file = h5py.File(self.path, "r")
        return Image.fromarray(self._file["x"][i]), None


def pcam(ds) -> Split:
    import h5py

    files = ds._FILES[ds._split]
    with h5py.File(ds._base_folder / files["targets"][0], "r") as f:
        labels = np.asarray(f["y"][:, 0, 0, 0], dtype=np.int64)
    return Split(labels=labels, images=H5Images(ds._base_folder / files["images"][0]))


def fer2013(root: Path, usage: str) -> tuple[Split, list[str]]:
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


READERS = {"fer2013": fer2013}   # loaders that are not torchvision classes, by data.registry.Dataset.loader
