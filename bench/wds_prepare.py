"""`prepare` on WebDataset shards: clipprobe's index against the copying path, on the same shards.

Generates `--samples` samples in `--shards` shards in CLIP_benchmark's layout (nine tenths of the
shards train, one tenth test; classnames.txt beside them), each sample a JPEG of `--image` size
(quality 90, photo-like: ~104 KB at 500x375, ImageNet's average) and its `cls`.  To keep generating
100,000 of them short, `--distinct` JPEGs are encoded and each sample's copy is made unique by a
JPEG comment segment holding its key (still a valid JPEG; neither side decodes images).

- clipprobe: `prepare` as the pipeline runs it, after the `inputs` stage has hashed the shards (its
  SHA-256s are then looked up, not recomputed); and `inputs` + `prepare` from a cold hash cache,
  which is what the first `dvc repro` costs (every shard read once, as DVC reads a tracked folder).
- the copying path: what `prepare` did before indexing, at its cheapest: every sample read with
  webdataset (`wds.WebDataset`, in shard order), its image bytes written unchanged (no re-encoding)
  into a Parquet table per split, beside the labels, as `prepare` writes image bytes.

Runs alternate (index, copy, index, copy, ...); the page cache holds the shards after the first
read, for both.  Prints the medians, their ratio, and the bytes each writes against the data's.

    python bench/wds_prepare.py                                   # 100,000 samples in 100 shards
    python bench/wds_prepare.py --samples 20000 --shards 20 --runs 1
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import struct
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipprobe.data import inputs
from clipprobe.data.prepare import prepare
from clipprobe.params import DataParams

JPEG_NOISE = 36   # bench/extract.py's: ~104 KB per 500x375 JPEG at quality 90


def jpeg(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    noisy = np.asarray(field, np.int16) + rng.integers(-JPEG_NOISE, JPEG_NOISE + 1, (size[1], size[0], 3), np.int16)
    buf = io.BytesIO()
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def unique(image: bytes, key: str) -> bytes:
    """The JPEG with a COM segment holding `key` right after its SOI marker."""
    text = key.encode()
    return image[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + image[2:]


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))


def generate(root: Path, samples: int, shards: int, size: tuple[int, int], distinct: int) -> None:
    """The shard set: the first nine tenths of the shards train, the rest test."""
    images = [jpeg(i, size) for i in range(distinct)]
    n_test = max(1, shards // 10)
    per = -(-samples // shards)
    for s in range(shards):
        split, index = ("train", s) if s < shards - n_test else ("test", s - (shards - n_test))
        (root / split).mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / split / f"{index}.tar", "w") as tar:
            for i in range(s * per, min(samples, (s + 1) * per)):
                key = f"{i:07d}"
                _member(tar, f"{key}.jpg", unique(images[i % distinct], key))
                _member(tar, f"{key}.cls", str(i % 10).encode())
    (root / "classnames.txt").write_text("".join(f"class {c}\n" for c in range(10)))


def copy(data: Path, out: Path, counts: dict[str, int]) -> None:
    """The copying path: webdataset reads each sample, its bytes go into a Parquet table per split."""
    import webdataset as wds

    out.mkdir(parents=True)
    schema = pa.schema([("id", pa.int64()), ("label", pa.int64()), ("image", pa.binary())])
    for split, n in counts.items():
        urls = f"{data}/{split}/{{0..{n - 1}}}.tar"
        with pq.ParquetWriter(out / f"{split}.parquet", schema) as writer:
            rows = {"id": [], "label": [], "image": []}
            for i, sample in enumerate(wds.WebDataset(urls, shardshuffle=False, empty_check=False)):
                rows["id"].append(i)
                rows["label"].append(int(sample["cls"]))
                rows["image"].append(sample["jpg"])
                if len(rows["id"]) == 1000:
                    writer.write_table(pa.table(rows, schema))
                    rows = {k: [] for k in rows}
            if rows["id"]:
                writer.write_table(pa.table(rows, schema))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (prepare's scan workers)."""
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def timed(fn) -> tuple[float, float]:
    start, start_cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - start, cpu_seconds() - start_cpu


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--image", default="500x375", help="WxH of the generated JPEGs")
    ap.add_argument("--distinct", type=int, default=256, help="JPEGs encoded (each sample's copy made unique)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("bench/.cache/wds-prepare"))
    ap.add_argument("--keep", action="store_true", help="keep the generated shards for another invocation")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.image.split("x"))
    work = args.dir.resolve()
    data = work / f"shards-{args.samples}-{args.shards}-{args.image}"
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    if not (data / "classnames.txt").is_file():
        shutil.rmtree(data, ignore_errors=True)
        start = time.perf_counter()
        generate(data, args.samples, args.shards, size, args.distinct)
        print(f"generated {args.samples} samples in {args.shards} shards in {time.perf_counter() - start:.0f} s")
    counts = {s: len(list((data / s).glob("*.tar"))) for s in ("train", "test")}
    pattern = f"wds:{data}/{{split}}/{{0..{max(counts.values()) - 1}}}.tar"
    p = DataParams(name=pattern)
    data_bytes = sum(size_of(data / s) for s in counts)
    os.chdir(work)   # the hash cache (.cache/clipprobe/) is the working directory's, as a project's
    cache = work / ".cache" / "clipprobe" / "sha256.json"

    times, cpu = {"cold": [], "index": [], "copy": []}, {"cold": [], "index": [], "copy": []}
    for run in range(args.runs):
        cache.unlink(missing_ok=True)
        steps = {"cold": lambda: (inputs.data_listing(p), prepare(p, work / "prepared")),
                 "index": lambda: prepare(p, work / "prepared"),   # after inputs: the hashes are in the cache
                 "copy": lambda: copy(data, work / "copied", counts)}
        for k, step in steps.items():
            shutil.rmtree(work / ("copied" if k == "copy" else "prepared"), ignore_errors=True)
            wall, cpu_s = timed(step)
            times[k].append(wall)
            cpu[k].append(cpu_s)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s (CPU {cpu[k][-1]:.1f} s)" for k, v in times.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    index_bytes, copy_bytes = size_of(work / "prepared"), size_of(work / "copied")
    print(f"data: {args.samples} samples, {sum(counts.values())} shards ({counts['train']} train, {counts['test']} "
          f"test), {data_bytes / 1e9:.2f} GB")
    print(f"prepare (index, hashes cached by inputs): median {med['index']:.2f} s of {len(times['index'])}, writes "
          f"{index_bytes / 1e6:.2f} MB = {100 * index_bytes / data_bytes:.3f}% of the data")
    print(f"inputs + prepare (cold hash cache):       median {med['cold']:.2f} s")
    print(f"copying path (webdataset -> Parquet):     median {med['copy']:.2f} s, writes {copy_bytes / 1e9:.2f} GB "
          f"= {100 * copy_bytes / data_bytes:.1f}% of the data")
    print(f"ratio (wall): prepare / copying = {med['index'] / med['copy']:.3f}; inputs + prepare cold / copying = "
          f"{med['cold'] / med['copy']:.3f}")
    print(f"CPU time (this process and its workers; the copy's disk writes are the kernel's): prepare "
          f"{med_cpu['index']:.1f} s, inputs + prepare cold {med_cpu['cold']:.1f} s, copying {med_cpu['copy']:.1f} s")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work / "copied", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(data)


if __name__ == "__main__":
    sys.exit(main())
