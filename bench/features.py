"""The probe benchmark's features, extracted by clipprobe itself and cached in bench/.cache/.

All of Fashion-MNIST (Debian's dataset-fashion-mnist files: 60,000 train, 10,000 test images)
through an untrained (random, seed 0) ViT-B/32, 512-d projection features, bf16 on CPU as
`extract.precision: auto` picks on CPUs with native bf16 (pinned here so every machine builds
the same set); about 15 minutes on 2 Sapphire Rapids cores, once.  A killed run resumes at its
first missing shard.

`small`: the first 10,000 train and the first 2,000 test images (the splits are shuffled).
`large`: all 60,000 train and 10,000 test images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipprobe import datasets, encoders, features, store
from clipprobe.params import DataParams

CACHE = Path(__file__).resolve().parent / ".cache"
SETS = {"small": (10_000, 2_000), "large": (60_000, 10_000)}  # (train rows, test rows)


def _extract() -> None:
    prepared = CACHE / "prepared"
    if not (prepared / "info.json").is_file():
        datasets.prepare(DataParams(name="fashion-mnist", root=str(CACHE / "raw")), prepared)
    encoder = encoders.load_encoder("ViT-B/32", "random")
    device, dtype = torch.device("cpu"), torch.bfloat16
    encoders.place(encoder, device, dtype)
    identity = {"model": "ViT-B/32", "arch": encoder.arch, "weights": "random",
                "weights_id": encoder.weights_id, "layer": "projection"}
    for split in ("train", "test"):
        out = CACHE / "features" / split
        if (out / store.MANIFEST).is_file():
            continue
        fp = features.split_fingerprint(encoder, prepared, split, identity, dtype=str(dtype))
        features.extract_split(encoder, prepared, split, CACHE / "scratch" / split, batch_size=100,
                               workers=0, shard_size=5000, device=device, dtype=dtype,
                               identity=identity, fp=fp)
        features.publish(CACHE / "scratch" / split, out)


def load(name: str):
    """(x_train, y_train, x_test, y_test) of the `small` or `large` benchmark set."""
    if not all((CACHE / "features" / s / store.MANIFEST).is_file() for s in ("train", "test")):
        _extract()
    n_train, n_test = SETS[name]
    x_tr, y_tr, _, _ = store.read_features(CACHE / "features" / "train")
    x_te, y_te, _, _ = store.read_features(CACHE / "features" / "test")
    return x_tr[:n_train], y_tr[:n_train], x_te[:n_test], y_te[:n_test]


if __name__ == "__main__":
    for name in SETS:
        x_tr, _, x_te, _ = load(name)
        print(f"{name}: train {x_tr.shape}, test {x_te.shape}")
