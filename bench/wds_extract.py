"""Extraction from WebDataset shards against the same images from an ImageFolder, same model, same device.

Generates `--images` JPEG files of `--image` size (bench/extract.py's photo-like JPEGs, 10 classes)
as an ImageFolder (train/ and a small test/) and writes the same files, byte for byte, into
CLIP_benchmark-style shards (`--shards` of them, webdataset's TarWriter); `prepare` indexes both.
Then the library's own `extract_split` embeds the train split of each, alternating, `--repeats`
times, with every extract param at `auto` (on CPU: batches of 100 decoded in the main process);
model loading is outside the timings.  Prints images/s of both, the ratio, the same in images
per CPU second (this process's CPU time: steadier than wall time on a shared machine), and whether
the features are equal.

    python bench/wds_extract.py                               # untrained ViT-B/32, 500 500x375 JPEGs
    python bench/wds_extract.py --model tests/tiny-clip.json  # a tiny model: the data path dominates
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from extract import jpeg_files

from clipprobe import devices
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, store, towers
from clipprobe.params import DataParams


def write_shards(folder: Path, dest: Path, n_shards: int) -> str:
    """The folder's train files in prepare's order, n_shards tars; test in one."""
    import webdataset as wds

    from clipprobe.data import imagefolder

    splits, classes = imagefolder.load(folder)
    for split, sp in splits.items():
        (dest / split).mkdir(parents=True)
        n = n_shards if split == "train" else 1
        per = -(-len(sp.paths) // n)
        for i in range(n):
            with wds.TarWriter(str(dest / split / f"{i}.tar")) as w:
                for k in range(i * per, min(len(sp.paths), (i + 1) * per)):
                    w.write({"__key__": f"{k:07d}", "jpg": (folder / sp.paths[k]).read_bytes(),
                             "cls": int(sp.labels[k])})
    (dest / "classnames.txt").write_text("".join(f"{c}\n" for c in classes))
    return f"wds:{dest}/{{split}}/{{0..{n_shards - 1}}}.tar"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--image", default="500x375", help="WxH of the generated JPEGs")
    ap.add_argument("--shards", type=int, default=5)
    ap.add_argument("--model", default="ViT-B/32")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("bench/.cache/wds-extract"))
    args = ap.parse_args()
    work = args.dir.resolve()
    if Path(args.model).is_file():   # before the chdir below
        args.model = str(Path(args.model).resolve())
    shutil.rmtree(work, ignore_errors=True)
    size = tuple(int(v) for v in args.image.split("x"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    jpeg_files(args.images, size, work / "folder" / "train", None)
    jpeg_files(10, size, work / "folder" / "test", None)
    name = write_shards(work / "folder", work / "wds", args.shards)
    os.chdir(work)   # the hash cache is the working directory's, as a project's
    sources = {"ImageFolder": str(work / "folder"), "wds shards": name}
    for kind, source in sources.items():
        prepare(DataParams(name=source), work / f"prepared-{kind}")

    device = devices.pick_device("cpu")
    dtype = devices.pick_precision("auto", device)
    batch, workers = extract.loader_settings("auto", "auto", device)
    encoder = towers.place(encoders.load_encoder(args.model, args.weights, "projection"), device, dtype)
    spec = extract.spec(encoder, args.model, args.weights, batch_size=batch, shard_size=10000,
                        device=device, dtype=dtype)
    times, cpu, feats = {k: [] for k in sources}, {k: [] for k in sources}, {}
    for r in range(args.repeats + 1):   # the first round warms up both (page cache, allocator, oneDNN)
        for kind in sources:
            scratch = work / f"features-{kind}"
            shutil.rmtree(scratch, ignore_errors=True)
            start, start_cpu = time.perf_counter(), time.process_time()
            extract.extract_split(encoder, work / f"prepared-{kind}", "train", scratch, spec, "bench", device=device,
                                  dtype=dtype, workers=workers)
            if r:
                times[kind].append(time.perf_counter() - start)
                cpu[kind].append(time.process_time() - start_cpu)
            feats[kind] = store.read_features(scratch)[0]
    rates = {k: args.images / statistics.median(v) for k, v in times.items()}
    print(f"untrained {args.model} ({args.weights}), {args.images} {args.image} JPEGs, CPU, {dtype}, batch {batch}, "
          f"{workers} workers, {torch.get_num_threads()} threads; median of {args.repeats}")
    for kind, v in times.items():
        print(f"{kind:12s} {rates[kind]:8.1f} img/s  (wall: {', '.join(f'{t:.1f}' for t in v)} s; CPU time: "
              f"{', '.join(f'{t:.1f}' for t in cpu[kind])} s)")
    cpu_ratio = statistics.median(cpu["ImageFolder"]) / statistics.median(cpu["wds shards"])
    print(f"ratio wds / ImageFolder: {rates['wds shards'] / rates['ImageFolder']:.3f} in images/s (wall), "
          f"{cpu_ratio:.3f} in images per CPU second; features equal: "
          f"{np.array_equal(feats['wds shards'], feats['ImageFolder'])}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
