"""The probe benchmark's feature sets, extracted by clipprobe itself and cached.

All of Fashion-MNIST (Debian's dataset-fashion-mnist files: 60,000 train, 10,000 test images)
through an untrained (random, seed 0) ViT-B/32, 512-d projection features, bf16 on CPU as
`extract.precision: auto` picks on CPUs with native bf16 (pinned here so every machine builds
the same set); about 10 minutes on 2 Sapphire Rapids cores, once.  A killed run resumes with
its missing shards.

`small`: the first 10,000 train and the first 2,000 test images (the splits are shuffled).
`large`: all 60,000 train and 10,000 test images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipprobe import datasets, encoders, features, store
from clipprobe.params import DataParams

SETS = {"small": (10_000, 2_000), "large": (60_000, 10_000)}  # (train rows, test rows)
MODEL, WEIGHTS, LAYER = "ViT-B/32", "random", "projection"


def build(cache: Path) -> None:
    """Extract both splits into `cache`/features (skipping finished ones)."""
    prepared = cache / "prepared"
    if not (prepared / "info.json").is_file():
        datasets.prepare(DataParams(name="fashion-mnist", root=str(cache / "raw")), prepared)
    encoder = encoders.load_encoder(MODEL, WEIGHTS, LAYER)
    device, dtype = torch.device("cpu"), torch.bfloat16
    encoders.place(encoder, device, dtype)
    spec = features.spec(encoder, MODEL, WEIGHTS, LAYER, batch_size=100, shard_size=5000, device=device, dtype=dtype)
    for split in ("train", "test"):
        out = cache / "features" / split
        if (out / store.MANIFEST).is_file():
            continue
        fp = features.split_fingerprint(spec, prepared, split)
        features.extract_split(encoder, prepared, split, cache / "scratch" / split, spec, fp,
                               device=device, dtype=dtype, workers=0)
        features.publish(cache / "scratch" / split, out)


def load(name: str, cache: Path):
    """(x_train, y_train, x_test, y_test) of the `small` or `large` set, built first if missing."""
    if not all((cache / "features" / s / store.MANIFEST).is_file() for s in ("train", "test")):
        build(cache)
    n_train, n_test = SETS[name]
    x_tr, y_tr, _, _ = store.read_features(cache / "features" / "train")
    x_te, y_te, _, _ = store.read_features(cache / "features" / "test")
    return x_tr[:n_train], y_tr[:n_train], x_te[:n_test], y_te[:n_test]
