"""Feature extraction: prepared split -> frozen encoder -> feature-store shards.

Work happens in a scratch directory keyed by the fingerprint of everything the
features depend on (`.cache/clipprobe/extract/<fingerprint>/`), outside DVC's
outputs, which DVC deletes before rerunning a stage.  A killed run (of either engine)
computes only its missing shards again; only a finished split is moved into
`features/<split>/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from clipprobe import __version__, atomic, identity
from clipprobe.data.prepared import MAX_PIXELS, SplitImages, iter_split, read_info, sample_paths, split_rows
from clipprobe.digest import file_sha256
from clipprobe.encode import jpeg, preprocess, store
from clipprobe.encode.towers import Encoder
from clipprobe.errors import ClipprobeError

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
    try:
        with torch.inference_mode():
            for batch in loader:
                x = prep.to_device(batch, device, dtype)
                outs.append(encoder.visual(x))
                progress(len(x))
            return torch.cat(outs).float().cpu().numpy()
    except torch.OutOfMemoryError:
        raise ClipprobeError(f"extract.batch_size={loader.batch_size}: {encoder.arch} ran out of {device} memory "
                             "on a batch this size; lower extract.batch_size") from None


def check_finite(emb: np.ndarray, ids, paths, spec: "Spec", split: str) -> None:
    """Stop before a shard holding a NaN or infinite feature is written: a probe or zero-shot
    fed one scores at chance or fails deep in linear algebra, never naming the model."""
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        first = paths[i] if paths is not None else f"image id {ids[i]}"
        raise ClipprobeError(
            f"model.name={spec.model} (model.weights={spec.weights}): non-finite features (NaN or inf) for "
            f"{int(bad.sum())} of {len(emb)} {split} images in this shard, the first {first}; the weights hold "
            f"NaN/inf or the activations overflow {spec.precision}: check the checkpoint, or set "
            "extract.precision: fp32; nothing was written to features/")


@dataclass(frozen=True)
class Spec:
    """Everything a split's features depend on besides its prepared rows: the encoder as named
    and as identified by its weights, its preprocess (and how that is split between loader and
    device), and how extraction runs.  The fingerprint hashes all of it; the manifest records it."""
    model: str
    arch: str
    weights: str
    weights_id: str
    layer: str
    preprocess: str
    preprocess_split: str
    batch_size: int
    shard_size: int
    device: str
    precision: str


def spec(encoder: Encoder, model: str, weights: str, *, batch_size: int, shard_size: int,
         device: torch.device, dtype: torch.dtype) -> Spec:
    """The one place a `Spec` is built: the extract stage, the benchmarks and the tests call it.
    The layer is the encoder's (`extract.layer` with `auto` resolved by the model's source)."""
    return Spec(model=model, arch=encoder.arch, weights=weights, weights_id=encoder.weights_id, layer=encoder.layer,
                preprocess=repr(encoder.preprocess),
                preprocess_split=type(preprocess.for_model(encoder.preprocess)).__name__,
                batch_size=batch_size, shard_size=shard_size, device=device.type,
                precision=str(dtype).removeprefix("torch."))


def split_fingerprint(spec: Spec, prepared: Path, split: str) -> str:
    """The hash of the prepared rows (which hold image bytes, or paths or an index into a source's
    files with digests of their content where prepare records them), where those files live, and `spec`."""
    table = prepared / f"{split}.parquet"
    in_files = "image" not in pq.read_schema(table).names
    root = read_info(prepared)["root"] if in_files else None
    return fingerprint(split=split, data=file_sha256(table), root=root, **asdict(spec))


def run_split(prepared: Path, split: str, scratch: Path, spec: Spec, fp: str, embed_dim: int,
              write_shards, engine: str = "") -> dict:
    """One split's extraction, the same for every engine: a finished split (its manifest is
    written last) is returned as is; otherwise `write_shards(todo, progress)` computes exactly
    the shards not yet in `scratch` (so a killed run of either engine resumes with what it left),
    then the manifest is written."""
    if (scratch / store.MANIFEST).is_file():
        return store.read_manifest(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    info = read_info(prepared)
    rows = split_rows(prepared, split)
    n_shards = math.ceil(rows / spec.shard_size)
    todo = store.missing_shards(scratch, n_shards)
    n_todo = sum(min(rows, (s + 1) * spec.shard_size) - s * spec.shard_size for s in todo)
    need = n_todo * embed_dim * 4   # the float32 features alone: Parquet adds ids, labels and overhead
    if need > atomic.free_space(scratch):   # now, not after hours of extraction
        raise atomic.disk_full(scratch, need)
    bar = tqdm(total=rows, initial=rows - n_todo, unit="img", desc=f"extract {split}{engine and f' ({engine})'}",
               mininterval=1.0)
    start = time.perf_counter()
    try:
        write_shards(todo, bar.update)
    finally:
        bar.close()
    if n_todo:
        elapsed = time.perf_counter() - start
        print(f"{split}: {n_todo} images in {elapsed:.1f}s ({n_todo / elapsed:.1f} img/s)"
              + (f" on {engine}" if engine else ""))
    manifest = {"split": split, **{k: info.get(k) for k in identity.DATA_KEYS}, "rows": rows,
                "embed_dim": embed_dim, "shards": [store.shard_name(i) for i in range(n_shards)],
                "fingerprint": fp, "skipped": info.get("skipped", []), **asdict(spec)}
    store.write_manifest(scratch, manifest)
    return manifest


def extract_split(encoder: Encoder, prepared: Path, split: str, scratch: Path, spec: Spec, fp: str, *,
                  device: torch.device, dtype: torch.dtype, workers: int, jpeg_on_device: bool | None = None) -> dict:
    """Extract one prepared split into `scratch` in this process and return its manifest.
    `jpeg_on_device`: decode JPEG files on `device` (`jpeg.applies`; None = on CUDA)."""
    from torch.utils.data import DataLoader

    info = read_info(prepared)
    root, max_pixels = info["root"], info.get("max_pixels", MAX_PIXELS)
    prep = preprocess.for_model(encoder.preprocess)

    def write_shards(todo: list[int], progress) -> None:
        for s, table in enumerate(iter_split(prepared, split, spec.shard_size)):
            if s not in todo:
                continue
            images, step, collate = SplitImages(table, root, prep.host, max_pixels), prep, preprocess.collate_by_shape
            on_device = jpeg.applies(table.column_names, prep, device, jpeg_on_device)
            if on_device:  # the decoder reads the bytes from host memory: nothing to pin
                images, step, collate = jpeg.JpegFiles(images), jpeg.DeviceJpegPreprocess(prep, images), jpeg.collate
            loader = DataLoader(images, batch_size=spec.batch_size, num_workers=workers, collate_fn=collate,
                                pin_memory=device.type == "cuda" and not on_device)
            emb = encode_batches(encoder, loader, step, device, dtype, progress)
            ids = table.column("id").to_numpy()
            paths = sample_paths(table)
            check_finite(emb, ids, paths, spec, split)
            store.write_shard(scratch, s, ids, table.column("label").to_numpy(), emb, paths)

    return run_split(prepared, split, scratch, spec, fp, encoder.embed_dim, write_shards)


def publish(scratch: Path, out: Path) -> None:
    """Move a finished split from scratch into its output directory, atomically."""
    atomic.move_folder(scratch, out)


def forget_other_runs(keep: set[str], scratch_root: Path = SCRATCH) -> None:
    """Drop resume state of other configurations: it can never be reused by this one."""
    if scratch_root.is_dir():
        for d in scratch_root.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
