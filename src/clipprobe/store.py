"""The feature store: per split, `manifest.json` beside a `shards/` folder of Parquet shards.

The manifest sits beside the shards, not among them, so `shards/` reads as one Parquet
dataset with pandas, polars or DuckDB.  Shards have columns `id`, `label`, `embedding` (fixed-size list of float32) and, for
file-based sources, `path`.  They are readable as is by pandas, polars or DuckDB.
Every file is written to a temporary name and renamed, so a shard either exists
whole or not at all, which is what makes resuming an interrupted extraction safe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipprobe.errors import ClipprobeError

MANIFEST = "manifest.json"
SHARDS = "shards"


def shard_name(index: int) -> str:
    """A shard's path relative to its split's directory."""
    return f"{SHARDS}/part-{index:05d}.parquet"


def schema(dim: int, with_path: bool) -> pa.Schema:
    cols = [pa.field("id", pa.int64()), pa.field("label", pa.int64()),
            pa.field("embedding", pa.list_(pa.float32(), dim))]
    return pa.schema(cols + ([pa.field("path", pa.string())] if with_path else []))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ClipprobeError(f"{path}: cannot write ({e.strerror or e}); free disk space or fix "
                             "the directory's permissions, then rerun to resume") from None


def write_shard(directory: Path, index: int, ids, labels, embeddings: np.ndarray, paths=None) -> None:
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = emb.shape
    cols = [pa.array(np.asarray(ids, np.int64)), pa.array(np.asarray(labels, np.int64)),
            pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)]
    if paths is not None:
        cols.append(pa.array(paths, pa.string()))
    table = pa.Table.from_arrays(cols, schema=schema(dim, paths is not None))
    try:
        (directory / SHARDS).mkdir(exist_ok=True)
    except OSError as e:
        raise ClipprobeError(f"{directory / SHARDS}: cannot write ({e.strerror or e}); free disk space or fix "
                             "the directory's permissions, then rerun to resume") from None
    _atomic(directory / shard_name(index), lambda p: pq.write_table(table, p, compression="zstd"))


def write_manifest(directory: Path, manifest: dict) -> None:
    _atomic(directory / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))


def missing_shards(directory: Path, expected: int) -> list[int]:
    """Indices of the shards not yet written: what a resumed extraction computes (engines
    may finish shards out of order, so this is not only a tail)."""
    return [i for i in range(expected) if not (directory / shard_name(i)).is_file()]


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ClipprobeError(f"{path} is missing; run `dvc repro extract` first")
    return json.loads(path.read_text())


def read_features(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(embeddings float32 [n, dim], labels, ids, manifest) of one split."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    tables = [pq.read_table(directory / s) for s in manifest["shards"]]
    table = pa.concat_tables(tables) if tables else schema(manifest["embed_dim"], False).empty_table()
    if table.num_rows != manifest["rows"]:
        raise ClipprobeError(f"{directory}: shards hold {table.num_rows} rows, the manifest says "
                             f"{manifest['rows']}; rerun `dvc repro -f extract`")
    emb = table.column("embedding").combine_chunks()
    x = emb.values.to_numpy(zero_copy_only=False).reshape(len(emb), manifest["embed_dim"])
    return (x.astype(np.float32, copy=False), table.column("label").to_numpy(),
            table.column("id").to_numpy(), manifest)
