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
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from clipprobe import __version__, store
from clipprobe.datasets import SplitImages, read_split
from clipprobe.models import Encoder

SCRATCH = Path(".cache/clipprobe/extract")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(**parts) -> str:
    """A stable hash of everything a split's features depend on."""
    blob = json.dumps({"clipprobe": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def encode_batches(encoder: Encoder, loader, device: torch.device, dtype: torch.dtype):
    """Yield float32 numpy embeddings per batch, with autocast where dtype is not fp32."""
    visual = encoder.visual
    with torch.inference_mode():
        for images, _ in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                out = visual(images)
            yield out.float().cpu().numpy()


def split_fingerprint(encoder: Encoder, prepared: Path, split: str, identity: dict, **settings) -> str:
    """The hash of the prepared rows (which hold image bytes or paths), where path-based
    images live, the encoder's identity and preprocess, and the extraction settings."""
    table = prepared / f"{split}.parquet"
    path_based = "path" in read_split(prepared, split).column_names
    root = json.loads((prepared / "info.json").read_text())["root"] if path_based else None
    return fingerprint(split=split, data=file_digest(table), root=root,
                       preprocess=repr(encoder.preprocess), **identity, **settings)


def extract_split(encoder: Encoder, prepared: Path, split: str, scratch: Path, *, batch_size: int,
                  workers: int, shard_size: int, device: torch.device, dtype: torch.dtype,
                  identity: dict, fp: str) -> dict:
    """Extract one prepared split into the scratch directory `scratch`, resuming at its
    first missing shard, and return the split's manifest (written last, as the mark of a
    finished split)."""
    from torch.utils.data import DataLoader, Subset

    if (scratch / store.MANIFEST).is_file():
        return store.read_manifest(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    info = json.loads((prepared / "info.json").read_text())
    table = read_split(prepared, split)
    rows = table.num_rows
    n_shards = math.ceil(rows / shard_size)
    done = store.completed_shards(scratch, n_shards)
    images = SplitImages(table, info["root"], encoder.preprocess)
    ids = table.column("id").to_numpy()
    labels = table.column("label").to_numpy()
    paths = table.column("path").to_pylist() if "path" in table.column_names else None

    first = min(rows, done * shard_size)
    bar = tqdm(total=rows, initial=first, unit="img", desc=f"extract {split}", mininterval=1.0)
    start = time.perf_counter()
    for s in range(done, n_shards):
        lo, hi = s * shard_size, min(rows, (s + 1) * shard_size)
        loader = DataLoader(Subset(images, range(lo, hi)), batch_size=batch_size, num_workers=workers,
                            pin_memory=device.type == "cuda")
        chunks = []
        for emb in encode_batches(encoder, loader, device, dtype):
            chunks.append(emb)
            bar.update(len(emb))
        store.write_shard(scratch, s, ids[lo:hi], labels[lo:hi], np.concatenate(chunks),
                          None if paths is None else paths[lo:hi])
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
