"""Images/s of the Ray engine per actor count, on this machine.

    python bench/ray_scaling.py --actors 1,2 [--images 1000] [--model ViT-B/32] [--weights random]

Extracts the train split of a prepared Fashion-MNIST subset (made offline from Debian's
IDX files) once per actor count, into a fresh scratch directory, on one local Ray (all
cores) or the cluster at --address.  The time of each run includes starting its actors
and loading one model per actor, as a user's run does; more images amortise that.
`scaling()` is the entry point for other benchmark scripts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from clipprobe import datasets, devices, encoders, params, ray_engine  # noqa: E402


def scaling(actor_counts: list[int], prepared: Path, split: str = "train", *, model: str = "ViT-B/32",
            weights: str = "random", batch_size: int = 50, shard_size: int = 250,
            address: str | None = None) -> list[dict]:
    """One row per actor count: images, seconds and images/s of extracting `split` on Ray (CPU)."""
    base = {"model": {"name": model, "weights": weights},
            "extract": {"engine": "ray", "batch_size": batch_size, "shard_size": shard_size}}
    p = params.parse(base)
    encoder = encoders.load_encoder(p.model.name, p.model.weights, p.extract.layer)
    device, dtype = torch.device("cpu"), devices.pick_precision(p.extract.precision, torch.device("cpu"))
    rows = []
    with ray_engine.connected(address), tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(actor_counts):  # a fresh scratch each run: a finished one would be reused
            p = params.parse({**base, "extract": {**base["extract"], "ray": {"actors": n}}})
            start = time.perf_counter()
            manifest = ray_engine.extract_split(encoder, prepared, split, Path(tmp) / f"run{i}",
                                                model=p.model, extract=p.extract, device=device, dtype=dtype,
                                                identity={}, fp="bench")
            seconds = time.perf_counter() - start
            rows.append({"engine": "ray", "actors": n, "images": manifest["rows"], "seconds": round(seconds, 1),
                         "images_per_s": round(manifest["rows"] / seconds, 1)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actors", default="1,2", help="comma-separated actor counts")
    ap.add_argument("--images", type=int, default=1000, help="train images (a multiple of 10 classes)")
    ap.add_argument("--model", default="ViT-B/32")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--address", default=None, help="a running Ray cluster (default: start a local Ray)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared"
        datasets.prepare(params.DataParams(name="fashion-mnist", root=str(Path(tmp) / "raw"),
                                           limit_per_class=max(1, a.images // 10)), prepared)
        rows = scaling([int(n) for n in a.actors.split(",")], prepared, model=a.model, weights=a.weights,
                       batch_size=a.batch_size, address=a.address)
    print(f"\n{a.model} ({a.weights}), batch {a.batch_size}, {os.cpu_count()} cores")
    print("actors  images  seconds  images/s")
    for r in rows:
        print(f"{r['actors']:>6}  {r['images']:>6}  {r['seconds']:>7}  {r['images_per_s']:>8}")


if __name__ == "__main__":
    main()
