"""The benchmark's features, extracted by clipprobe itself and cached in bench/.cache/.

`small`: untrained (random, seed 0) ViT-B/32 features (512-d) of Fashion-MNIST from Debian's
dataset-fashion-mnist files: the first 3,000 images of the train split and the first 100
test images of each class (3,000 x 512 and 1,000 x 512).  Extraction on 2 busy CPU cores ran
at 3-6 images/s, so this is what one benchmark session could extract; it is done once.

`large`: 48,000 train and 10,000 test rows (58,000 x 512) made from `small`: each train
feature repeated 16 times and each test feature 10 times with Gaussian jitter (the split's
per-dimension std times 0.5, numpy seed 0), so train rows come only from train images and
test rows only from test images.  A stand-in for 60,000 extracted images (hours on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from clipprobe import datasets, features, models, store
from clipprobe.params import DataParams

CACHE = Path(__file__).resolve().parent / ".cache"
TRAIN_ROWS, TEST_PER_CLASS = 3000, 100
TRAIN_COPIES, TEST_COPIES, JITTER, SEED = 16, 10, 0.5, 0


def _prepare(prepared: Path) -> None:
    datasets.prepare(DataParams(name="fashion-mnist", root=str(CACHE / "raw"), limit_per_class=1000), prepared)
    train = datasets.read_split(prepared, "train")  # the first 3,000 images (no class reaches 1,000)
    pq.write_table(train.slice(0, TRAIN_ROWS), prepared / "train.parquet")
    test = datasets.read_split(prepared, "test")
    pq.write_table(test.take(datasets._limit(test.column("label").to_numpy(), TEST_PER_CLASS)),
                   prepared / "test.parquet")


def _extract() -> None:
    prepared = CACHE / "prepared"
    if not (prepared / "info.json").is_file():
        _prepare(prepared)
    encoder = models.load_encoder("ViT-B/32", "random")
    identity = {"model": "ViT-B/32", "arch": encoder.arch, "weights": "random",
                "weights_id": encoder.weights_id, "layer": "projection"}
    for split in ("train", "test"):
        out = CACHE / "small" / split
        if (out / store.MANIFEST).is_file():
            continue
        fp = features.split_fingerprint(encoder, prepared, split, identity)
        scratch = CACHE / "scratch" / split  # a killed extraction resumes at its first missing shard
        features.extract_split(encoder, prepared, split, scratch, batch_size=100, workers=0,
                               shard_size=1000, device=torch.device("cpu"), dtype=torch.float32,
                               identity=identity, fp=fp)
        features.publish(scratch, out)


def _jitter(x: np.ndarray, y: np.ndarray, copies: int, rng: np.random.Generator):
    scale = JITTER * x.std(axis=0)
    xs = np.concatenate([x + scale * rng.standard_normal(x.shape) for _ in range(copies)])
    return xs.astype(np.float32), np.tile(y, copies)


def load(name: str):
    """(x_train, y_train, x_test, y_test) of the `small` or `large` benchmark set."""
    if not all((CACHE / "small" / s / store.MANIFEST).is_file() for s in ("train", "test")):
        _extract()
    x_tr, y_tr, _, _ = store.read_features(CACHE / "small" / "train")
    x_te, y_te, _, _ = store.read_features(CACHE / "small" / "test")
    if name == "small":
        return x_tr, y_tr, x_te, y_te
    rng = np.random.default_rng(SEED)
    return (*_jitter(x_tr, y_tr, TRAIN_COPIES, rng), *_jitter(x_te, y_te, TEST_COPIES, rng))


if __name__ == "__main__":
    for name in ("small", "large"):
        x_tr, _, x_te, _ = load(name)
        print(f"{name}: train {x_tr.shape}, test {x_te.shape}")
