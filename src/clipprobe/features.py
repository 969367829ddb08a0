"""Feature extraction: prepared split -> frozen encoder -> feature-store shards.

Work happens in a scratch directory keyed by the fingerprint of everything the
features depend on (`.cache/clipprobe/extract/<fingerprint>/`), outside DVC's
outputs, which DVC deletes before rerunning a stage.  A killed run resumes at the
first missing shard; only a finished split is moved into `features/<split>/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from clipprobe import __version__, jpeg, preprocess, store
from clipprobe.datasets import SplitImages, iter_split, split_rows
from clipprobe.models import Encoder, file_sha256

SCRATCH = Path(".cache/clipprobe/extract")


def fingerprint(**parts) -> str:
    """A stable hash of everything a split's features depend on."""
    blob = json.dumps({"clipprobe": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def loader_settings(batch_size: int | str, workers: int | str, device: torch.device) -> tuple[int, int]:
    """Resolve `auto` batch size and worker count for the device.

    CPU: batches of 100 decoded in the main process, which leaves every core to the model
    (the preprocess is a small share of the time).  CUDA: batches of 512 and up to 8 decoding
    workers, so the data loader keeps the GPU fed.
    """
    cuda = device.type == "cuda"
    if batch_size == "auto":
        batch_size = 512 if cuda else 100
    if workers == "auto":
        workers = min(8, os.cpu_count() or 1) if cuda else 0
    return batch_size, workers


def encode_batches(encoder: Encoder, loader, prep, device: torch.device, dtype: torch.dtype,
                   progress=lambda n: None) -> np.ndarray:
    """float32 [n, dim] embeddings of the loader's batches, in order.

    Results stay on the device until the end, so on a GPU the loop only queues work (pinned,
    non-blocking copies, preprocess, forward) and never waits for a batch to finish.
    """
    outs = []
    with torch.inference_mode():
        for batch in loader:
            x = prep.to_device(batch, device, dtype)
            outs.append(encoder.visual(x))
            progress(len(x))
    return torch.cat(outs).float().cpu().numpy()


def split_fingerprint(encoder: Encoder, prepared: Path, split: str, identity: dict, **settings) -> str:
    """The hash of the prepared rows (which hold image bytes or paths), where path-based
    images live, the encoder's identity and preprocess (and how it is split between loader
    and device), and the extraction settings."""
    table = prepared / f"{split}.parquet"
    path_based = "path" in pq.read_schema(table).names
    root = json.loads((prepared / "info.json").read_text())["root"] if path_based else None
    return fingerprint(split=split, data=file_sha256(table), root=root,
                       preprocess=repr(encoder.preprocess),
                       preprocess_split=type(preprocess.for_model(encoder.preprocess)).__name__,
                       **identity, **settings)


def extract_split(encoder: Encoder, prepared: Path, split: str, scratch: Path, *, batch_size: int,
                  workers: int, shard_size: int, device: torch.device, dtype: torch.dtype,
                  identity: dict, fp: str, jpeg_on_device: bool | None = None) -> dict:
    """Extract one prepared split into the scratch directory `scratch`, resuming at its
    first missing shard, and return the split's manifest (written last, as the mark of a
    finished split).  `jpeg_on_device`: decode JPEG files on `device` (`jpeg.applies`;
    None = on CUDA)."""
    from torch.utils.data import DataLoader

    if (scratch / store.MANIFEST).is_file():
        return store.read_manifest(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    info = json.loads((prepared / "info.json").read_text())
    rows = split_rows(prepared, split)
    n_shards = math.ceil(rows / shard_size)
    done = store.completed_shards(scratch, n_shards)
    prep = preprocess.for_model(encoder.preprocess)

    first = min(rows, done * shard_size)
    bar = tqdm(total=rows, initial=first, unit="img", desc=f"extract {split}", mininterval=1.0)
    start = time.perf_counter()
    for s, table in enumerate(iter_split(prepared, split, shard_size)):
        if s < done:
            continue
        images, step, collate = SplitImages(table, info["root"], prep.host), prep, preprocess.collate_by_shape
        if jpeg.applies(table.column_names, prep, device, jpeg_on_device):
            images, step, collate = jpeg.JpegFiles(images), jpeg.DeviceJpegPreprocess(prep, images), jpeg.collate
        loader = DataLoader(images, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                            pin_memory=device.type == "cuda")
        emb = encode_batches(encoder, loader, step, device, dtype, bar.update)
        paths = table.column("path").to_pylist() if "path" in table.column_names else None
        store.write_shard(scratch, s, table.column("id").to_numpy(), table.column("label").to_numpy(),
                          emb, paths)
    bar.close()
    if rows > first:
        elapsed = time.perf_counter() - start
        print(f"{split}: {rows - first} images in {elapsed:.1f}s ({(rows - first) / elapsed:.1f} img/s)")
    manifest = build_manifest(info, split, rows, n_shards, encoder.embed_dim, fp, identity,
                              device=device.type, precision=str(dtype).removeprefix("torch."),
                              batch_size=batch_size)
    store.write_manifest(scratch, manifest)
    return manifest


def build_manifest(info: dict, split: str, rows: int, n_shards: int, embed_dim: int, fp: str,
                   identity: dict, **settings) -> dict:
    """The manifest of a finished split: what it holds and everything it was made from."""
    return {"split": split, "dataset": info["dataset"], "classes": info["classes"], "rows": rows,
            "embed_dim": embed_dim, "shards": [store.shard_name(i) for i in range(n_shards)],
            "fingerprint": fp, "skipped": info.get("skipped", []), **identity, **settings}


def publish(scratch: Path, out: Path) -> None:
    """Move a finished split from scratch into its output directory."""
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(scratch), str(out))


def forget_other_runs(keep: set[str], scratch_root: Path = SCRATCH) -> None:
    """Drop resume state of other configurations: it can never be reused by this one."""
    if scratch_root.is_dir():
        for d in scratch_root.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
