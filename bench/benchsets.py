"""The probe benchmark's feature sets, extracted by clipprobe itself and cached.

All of Fashion-MNIST (Debian's dataset-fashion-mnist files: 60,000 train, 10,000 test images)
through an untrained (random, seed 0) ViT-B/32, 512-d projection features, on CPU in the precision
`extract.precision: auto` picks there: bf16 on CPUs with native bf16 (about 10 minutes on 2
Sapphire Rapids cores, once), else fp32 (emulated bf16 ran at 5 images/s on 2 Ice Lake cores).
Each precision's set is cached apart (`features-bf16/`, `features-fp32/`) and the benchmarks
print which they read.  A killed run resumes with its missing shards.

`small`: the first 10,000 train and the first 2,000 test images (the splits are shuffled).
`large`: all 60,000 train and 10,000 test images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipprobe import devices
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, store, towers
from clipprobe.params import DataParams

SETS = {"small": (10_000, 2_000), "large": (60_000, 10_000)}  # (train rows, test rows)
MODEL, WEIGHTS, LAYER = "ViT-B/32", "random", "projection"


def precision() -> torch.dtype:
    """The precision this machine builds the sets in (extract.precision: auto on CPU)."""
    return devices.pick_precision("auto", torch.device("cpu"))


def features_dir(cache: Path) -> Path:
    return cache / f"features-{ {torch.bfloat16: 'bf16', torch.float32: 'fp32'}[precision()]}"


def build(cache: Path) -> None:
    """Extract both splits into `features_dir(cache)` (skipping finished ones)."""
    prepared = cache / "prepared"
    if not (prepared / "info.json").is_file():
        prepare(DataParams(name="fashion-mnist", root=str(cache / "raw")), prepared)
    encoder = encoders.load_encoder(MODEL, WEIGHTS, LAYER)
    device, dtype = torch.device("cpu"), precision()
    towers.place(encoder, device, dtype)
    spec = extract.spec(encoder, MODEL, WEIGHTS, batch_size=100, shard_size=5000, device=device, dtype=dtype)
    root = features_dir(cache)
    for split in ("train", "test"):
        out = root / split
        if (out / store.MANIFEST).is_file():
            continue
        fp = extract.split_fingerprint(spec, prepared, split)
        scratch = cache / f"scratch-{root.name}" / split
        extract.extract_split(encoder, prepared, split, scratch, spec, fp, device=device, dtype=dtype, workers=0)
        extract.publish(scratch, out)


def load(name: str, cache: Path):
    """(x_train, y_train, x_test, y_test) of the `small` or `large` set, built first if missing."""
    root = features_dir(cache)
    if not all((root / s / store.MANIFEST).is_file() for s in ("train", "test")):
        build(cache)
    print(f"benchmark features: {root} ({name}: the first {SETS[name][0]:,} train, {SETS[name][1]:,} test rows)")
    n_train, n_test = SETS[name]
    x_tr, y_tr, _, _ = store.read_features(root / "train")
    x_te, y_te, _, _ = store.read_features(root / "test")
    return x_tr[:n_train], y_tr[:n_train], x_te[:n_test], y_te[:n_test]
