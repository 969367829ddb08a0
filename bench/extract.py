"""Extraction speed: the canonical CLIP loop against clipprobe's extraction, same model, same images.

The canonical loop is the one in OpenAI's CLIP README: a torchvision dataset with the model's PIL
preprocess as transform, DataLoader(batch_size=100) without workers, encode_image per batch (on
CUDA with fp16 weights, as OpenAI's clip.load gives them; fp32 on CPU).  clipprobe's side is the
library's own extract_split on the same images written as a prepared split (PNG bytes in Parquet,
as `prepare` writes them), Parquet shards included.  The model-only rate (random tensors straight
into the image tower at clipprobe's batch size and precision) is the ceiling either can approach.
Model loading and a one-batch warm-up of each model are outside the timings.

    python bench/extract.py                                     # 500 Fashion-MNIST images, ViT-B/32
    python bench/extract.py --device cuda --images 20000 --data DIR --repeats 2
    python bench/extract.py --probe --images 2000               # + linear-probe accuracy, fp32 vs fast
    python bench/extract.py --engine ray --actors 1,2           # the Ray engine per actor count vs the local one
    python bench/extract.py --device cuda --jpeg 500x375 --images 20000 --no-canonical  # JPEG files, decoded on the GPU

`--jpeg WxH` generates JPEG files of that size (quality 90, photo-like: a smooth random colour
field plus noise, ~100 KB at 500x375 as ImageNet's average) as a file-based prepared split, as
`prepare` writes an ImageFolder; the canonical loop reads them with torchvision's ImageFolder.  On
CUDA clipprobe decodes them on the GPU (`jpeg` module; on CPU with `--jpeg-on-device`); "clipprobe,
PIL decode" then times the loader's PIL path on the same files, and the features of both are compared;
"decode only" is the device decoder alone on the files' bytes, in batches of clipprobe's size.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from clipprobe import devices, params
from clipprobe.data.downloads import (
    FASHION_MNIST_DIRS,
    FASHION_MNIST_FILES,
    stage_fashion_mnist,
)
from clipprobe.encode import encoders, extract, openclip, store, towers
from clipprobe.errors import ClipprobeError
from clipprobe.probe import linear, search, validation


def fashion_mnist(src: Path | None, root: Path, transform):
    """torchvision's FashionMNIST (train split) over the IDX files of `src`, unpacked into `root`."""
    from torchvision.datasets import FashionMNIST

    dirs = [src] if src else list(FASHION_MNIST_DIRS)
    if not stage_fashion_mnist(root, dirs):
        raise ClipprobeError(f"--data: no Fashion-MNIST IDX files ({', '.join(FASHION_MNIST_FILES)}, "
                             f"or .gz) in {', '.join(map(str, dirs))}")
    return FashionMNIST(str(root), train=True, transform=transform)


def synthetic32(n: int, transform):
    """Random 32x32 RGB images (CIFAR size), generated per index by torchvision."""
    from torchvision.datasets import FakeData

    return FakeData(size=n, image_size=(3, 32, 32), num_classes=10, transform=transform)


# +-levels of uniform noise: ~104 KB per 500x375 JPEG at quality 90 (ILSVRC-2012 train: 138 GB / 1.28M, ~110 KB)
JPEG_NOISE = 36


def _write_jpegs(args) -> None:
    root, size, start, stop = args
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        field = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        noisy = np.asarray(field, np.int16) + rng.integers(-JPEG_NOISE, JPEG_NOISE + 1, (size[1], size[0], 3),
                                                           dtype=np.int16)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(root / str(i % 10) / f"{i:07d}.jpg", quality=90)


def jpeg_files(n: int, size: tuple[int, int], root: Path, transform):
    """n generated JPEG files of `size` under root/<class>/ (10 classes), as torchvision's ImageFolder."""
    from torchvision.datasets import ImageFolder

    for c in range(10):
        (root / str(c)).mkdir(parents=True)
    step = -(-n // (4 * (os.cpu_count() or 1)))
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_jpegs, [(root, size, a, min(a + step, n)) for a in range(0, n, step)]))
    return ImageFolder(str(root), transform=transform)


def write_prepared_files(dataset, out: Path) -> Path:
    """An ImageFolder dataset's files as a file-based prepared split named `bench` (paths, as `prepare` writes)."""
    root = Path(dataset.root)
    out.mkdir(parents=True)
    paths = [str(Path(p).relative_to(root)) for p, _ in dataset.samples]
    pq.write_table(pa.table({"id": pa.array(range(len(paths)), pa.int64()),
                             "label": pa.array([y for _, y in dataset.samples], pa.int64()),
                             "path": pa.array(paths)}), out / "bench.parquet")
    info = {"dataset": "bench", "root": str(root), "classes": dataset.classes, "splits": {"bench": len(paths)}}
    (out / "info.json").write_text(json.dumps(info))
    return out


def decode_only(dataset, n_batch: int, device) -> float:
    """Seconds to decode the dataset's JPEG files on the device alone, in batches (bytes read beforehand)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p, _ in dataset.samples]
    decode_jpeg(data[:n_batch], mode=ImageReadMode.RGB, device=device)  # warm-up: nvjpeg's handles and buffers
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(data), n_batch):
        decode_jpeg(data[i:i + n_batch], mode=ImageReadMode.RGB, device=device)
    sync(device)
    return time.perf_counter() - start


def write_prepared(dataset, n: int, out: Path) -> Path:
    """The first n images of `dataset` as a prepared split named `bench` (what `prepare` writes)."""
    transform, dataset.transform = dataset.transform, None
    images, labels = [], []
    for i in range(n):
        image, label = dataset[i]
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        images.append(buf.getvalue())
        labels.append(int(label))
    dataset.transform = transform
    out.mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()), "label": pa.array(labels, pa.int64()),
                             "image": pa.array(images, pa.binary())}), out / "bench.parquet")
    info = {"dataset": "bench", "root": str(out), "classes": [str(c) for c in range(10)],
            "splits": {"bench": n}}
    (out / "info.json").write_text(json.dumps(info))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def canonical(model, dataset, n: int, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """OpenAI's README loop, as written there (but for the dtype cast open_clip leaves to the caller)."""
    all_features = []
    with torch.no_grad():
        for images, labels in DataLoader(Subset(dataset, range(n)), batch_size=100):
            all_features.append(model.encode_image(images.to(device, dtype)))
    return torch.cat(all_features).float().cpu().numpy()


def clipprobe_extract(encoder, prepared: Path, scratch: Path, args, device, dtype, jpeg_on_device=None) -> np.ndarray:
    spec = extract.spec(encoder, args.model, args.weights, batch_size=args.batch, shard_size=10000,
                         device=device, dtype=dtype)
    extract.extract_split(encoder, prepared, "bench", scratch, spec, "bench", device=device, dtype=dtype,
                           workers=args.workers_n, jpeg_on_device=jpeg_on_device)
    return store.read_features(scratch)[0]


def model_only(encoder, n: int, batch: int, device, dtype) -> None:
    size = encoder.visual.image_size
    x = torch.randn(batch, 3, *((size, size) if isinstance(size, int) else size), device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(-(-n // batch)):
            encoder.visual(x)
    sync(device)


def timed(fn, device):
    """(seconds, result) of fn(), device work included."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


# Probes here are fitted to the optimum (the torch solver, no iteration cap) so the comparison
# measures the features: fits cut off at 1000 iterations amplify tiny feature differences.
PROBE = dict(max_iter=100_000, solver="torch", device="cpu")


def search_C(x: np.ndarray, y: np.ndarray) -> float:
    """The CLIP-protocol C for the train half (first half of the rows), searched on a stratified 20% of it."""
    half = len(y) // 2
    tr, val = validation.validation_split(y[:half], 0.2, 0)
    return search.search_C(x[tr], y[tr], x[val], y[val], **PROBE).C


def probe_accuracy(x: np.ndarray, y: np.ndarray, C: float) -> float:
    """Test top-1 (%) of the probe fitted with C on the first half of the rows, tested on the second."""
    half = len(y) // 2
    return float(np.mean(linear.fit(x[:half], y[:half], C, **PROBE).predict(x[half:]) == y[half:]) * 100)


def scaling(actor_counts: list[int], prepared: Path, split: str = "train", *, model: str = "ViT-B/32",
            weights: str = "random", batch_size: int = 50, shard_size: int = 250,
            address: str | None = None) -> list[dict]:
    """One row per actor count: images, seconds and images/s of extracting `split` on Ray (CPU),
    each into a fresh scratch (a finished one would be reused), actor start and model loads included."""
    from clipprobe.encode import ray_engine

    base = {"model": {"name": model, "weights": weights},
            "extract": {"engine": "ray", "batch_size": batch_size, "shard_size": shard_size}}
    p = params.parse(base)
    encoder = encoders.load_encoder(p.model.name, p.model.weights, p.extract.layer)
    device, dtype = torch.device("cpu"), devices.pick_precision(p.extract.precision, torch.device("cpu"))
    rows = []
    with ray_engine.connected(address), tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(actor_counts):
            p = params.parse({**base, "extract": {**base["extract"], "ray": {"actors": n}}})
            start = time.perf_counter()
            spec = extract.spec(encoder, model, weights, batch_size=batch_size,
                                 shard_size=shard_size, device=device, dtype=dtype)
            manifest = ray_engine.extract_split(encoder, prepared, split, Path(tmp) / f"run{i}", spec, "bench",
                                                model=p.model, extract=p.extract, device=device, dtype=dtype)
            seconds = time.perf_counter() - start
            rows.append({"engine": "ray", "actors": n, "images": manifest["rows"], "seconds": round(seconds, 1),
                         "images_per_s": round(manifest["rows"] / seconds, 1)})
    return rows


def ray_vs_local(encoder, prepared: Path, tmp: Path, args, device, dtype, n: int) -> None:
    """The Ray engine's images/s per actor count next to the local engine's, same images."""
    if device.type != "cpu":
        raise ClipprobeError("--engine ray measures CPU actors here: run it with --device cpu")
    start = time.perf_counter()
    clipprobe_extract(encoder, prepared, tmp / "local", args, device, dtype)
    local = n / (time.perf_counter() - start)
    print(f"      local: {local:9.1f} images/s")
    for row in scaling([int(a) for a in args.actors.split(",")], prepared, "bench", model=args.model,
                       weights=args.weights, batch_size=args.batch):
        print(f"ray {row['actors']} actor{'s' if row['actors'] > 1 else ' '}: {row['images_per_s']:9.1f} images/s "
              f"({row['images_per_s'] / local:.2f}x local; includes starting actors and loading their models)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ViT-B/32")
    ap.add_argument("--weights", default="random", help="random (default: speed does not depend on them) or a tag/path")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--data", type=Path, help="folder with Fashion-MNIST IDX .gz files "
                    "(default: Debian's /usr/share/datasets/fashion-mnist)")
    ap.add_argument("--synthetic32", action="store_true", help="random 32x32 RGB images instead of Fashion-MNIST")
    ap.add_argument("--jpeg", metavar="WxH", help="generated JPEG files of this size (e.g. 500x375, 32x32) instead")
    ap.add_argument("--no-canonical", action="store_true", help="time clipprobe and the model only")
    ap.add_argument("--jpeg-on-device", action="store_true",
                    help="with --jpeg on CPU: decode in the main process with torchvision as CUDA would (default: PIL)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="clipprobe's: auto | fp32 | fp16 | bf16")
    ap.add_argument("--batch-size", default="auto", help="clipprobe's (the canonical loop's is 100)")
    ap.add_argument("--workers", default="auto", help="clipprobe's (the canonical loop has none)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each; the median is printed")
    ap.add_argument("--only", choices=("canonical", "clipprobe"),
                    help="time one side only, for process-level A/B tools such as /usr/bin/time")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="ray: the Ray engine per --actors count against the local engine (CPU)")
    ap.add_argument("--actors", default="1,2", help="with --engine ray: comma-separated actor counts")
    ap.add_argument("--probe", action="store_true",
                    help="also fit the linear probe on canonical fp32 and on clipprobe's features")
    args = ap.parse_args()

    device = devices.pick_device(args.device)
    dtype = devices.pick_precision(args.precision, device)
    canon_dtype = torch.float16 if device.type == "cuda" else torch.float32
    as_int = lambda v: v if v == "auto" else int(v)
    args.batch, args.workers_n = extract.loader_settings(as_int(args.batch_size), as_int(args.workers), device)
    if args.probe and args.only:
        raise ClipprobeError("--probe needs both sides: drop --only")
    wh = args.jpeg.split("x") if args.jpeg else []
    if args.jpeg and not (len(wh) == 2 and all(v.isdigit() and int(v) > 0 for v in wh)):
        raise ClipprobeError(f"--jpeg {args.jpeg}: expected WIDTHxHEIGHT, e.g. 500x375")
    if args.probe and args.no_canonical:
        raise ClipprobeError("--probe compares against the canonical loop: drop --no-canonical")
    if args.probe and canon_dtype != torch.float32:
        raise ClipprobeError("--probe compares against fp32 features: run it with --device cpu")

    import open_clip

    encoder = towers.place(encoders.load_encoder(args.model, args.weights), device, dtype)
    torch.manual_seed(openclip.RANDOM_SEED)   # the same weights as load_encoder's, for random
    model, _, preprocess = open_clip.create_model_and_transforms(
        encoder.arch, pretrained=None if args.weights == "random" else args.weights,
        force_quick_gelu="/" in args.model)
    model = model.to(device, canon_dtype).eval()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.jpeg:
            size = tuple(int(v) for v in args.jpeg.split("x"))
            t = time.perf_counter()
            data = jpeg_files(args.images, size, tmp / "jpeg", preprocess)
            n, prepared = len(data), write_prepared_files(data, tmp / "prepared")
            mean_kb = sum(os.path.getsize(p) for p, _ in data.samples) / n / 1e3
            what = f"generated {args.jpeg} JPEG (q90, mean {mean_kb:.0f} KB, made in {time.perf_counter() - t:.0f}s)"
        else:
            data = (synthetic32(args.images, preprocess) if args.synthetic32
                    else fashion_mnist(args.data, tmp / "raw", preprocess))
            n = min(args.images, len(data))
            prepared = write_prepared(data, n, tmp / "prepared")
            what = "synthetic 32x32" if args.synthetic32 else "Fashion-MNIST 28x28"
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"{n} {what} images, {args.model} ({args.weights}), {device.type} ({where}); canonical: batch 100, no workers, "
              f"{str(canon_dtype)[6:]}; clipprobe: batch {args.batch}, {args.workers_n} workers, {str(dtype)[6:]}",
              flush=True)

        if args.engine == "ray":
            ray_vs_local(encoder, prepared, tmp, args, device, dtype, n)
            return

        # warm-up: one full batch through each model (oneDNN and cuBLAS pick kernels per shape)
        sides = [args.only] if args.only else ["canonical", "clipprobe", "model only"]
        if args.no_canonical:
            sides.remove("canonical")
        on_device = bool(args.jpeg) and (device.type == "cuda" or args.jpeg_on_device)
        if on_device and "clipprobe" in sides:
            sides.insert(sides.index("clipprobe") + 1, "clipprobe, PIL decode")
        if "canonical" in sides:
            canonical(model, data, min(n, 100), device, canon_dtype)
        if "clipprobe" in sides:
            model_only(encoder, args.batch, args.batch, device, dtype)
        n_model = args.batch * max(1, min(20, n // args.batch))   # whole batches, enough for a steady rate
        runs = {k: [] for k in sides}
        for r in range(args.repeats):
            if "canonical" in sides:
                t, x_c = timed(lambda: canonical(model, data, n, device, canon_dtype), device)
                runs["canonical"].append(t)
            if "clipprobe" in sides:
                t, x_f = timed(lambda: clipprobe_extract(encoder, prepared, tmp / f"features{r}", args, device, dtype,
                                                         jpeg_on_device=on_device or None), device)
                runs["clipprobe"].append(t)
            if "clipprobe, PIL decode" in sides:
                t, x_p = timed(lambda: clipprobe_extract(encoder, prepared, tmp / f"pil{r}", args, device, dtype,
                                                         jpeg_on_device=False), device)
                runs["clipprobe, PIL decode"].append(t)
            if on_device and "clipprobe" in sides:
                runs.setdefault("decode only", []).append(decode_only(data, args.batch, device))
            if "model only" in sides:
                runs["model only"].append(timed(lambda: model_only(encoder, n_model, args.batch, device, dtype),
                                                device)[0])
        rate = {k: (n_model if k == "model only" else n) / statistics.median(t) for k, t in runs.items()}
        width = max(11, *map(len, rate))
        for k, v in rate.items():
            print(f"{k:>{width}}: {v:9.1f} images/s  (median of {args.repeats}: "
                  f"{', '.join(f'{t:.2f}' for t in runs[k])} s)")
        if "clipprobe, PIL decode" in rate:
            cos = np.sum(x_f * x_p, 1) / (np.linalg.norm(x_f, axis=1) * np.linalg.norm(x_p, axis=1))
            print(f"feature cosine device-decoded vs PIL-decoded: min {cos.min():.6f}, mean {cos.mean():.6f}; "
                  f"{rate['clipprobe'] / rate['clipprobe, PIL decode']:.2f}x the PIL-decode rate")
        if args.only or args.no_canonical:
            return
        print(f"      ratio: {rate['clipprobe'] / rate['canonical']:.2f}x clipprobe / canonical "
              f"({rate['clipprobe'] / rate['model only']:.0%} of the model-only rate)")
        cos = np.sum(x_c * x_f, 1) / (np.linalg.norm(x_c, axis=1) * np.linalg.norm(x_f, axis=1))
        print(f"feature cosine clipprobe vs canonical: min {cos.min():.6f}, mean {cos.mean():.6f}")
        if args.probe:
            y = pq.read_table(prepared / "bench.parquet", columns=["label"]).column("label").to_numpy()
            C_c, C_f = search_C(x_c, y), search_C(x_f, y)
            a_c, a_same, a_own = probe_accuracy(x_c, y, C_c), probe_accuracy(x_f, y, C_c), probe_accuracy(x_f, y, C_f)
            print(f"linear probe, test top-1 on {n - n // 2} images: canonical fp32 {a_c:.2f}% (C={C_c:.3g}); "
                  f"clipprobe {str(dtype)[6:]} with the same C {a_same:.2f}% ({a_same - a_c:+.2f} points), "
                  f"with its own C search {a_own:.2f}% (C={C_f:.3g}, {a_own - a_c:+.2f} points)")


if __name__ == "__main__":
    try:
        main()
    except ClipprobeError as e:
        sys.exit(f"error: {e}")
