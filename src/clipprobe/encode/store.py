"""The feature store: per split, `manifest.json` beside a `shards/` folder of Parquet shards.

The manifest sits beside the shards, not among them, so `shards/` reads as one Parquet
dataset with pandas, polars or DuckDB.  Shards have columns `id`, `label` (see labels.py),
`embedding` (fixed-size list of float32) and, for file-based sources, `path`.
Every file is written to a temporary name and renamed, so a shard either exists
whole or not at all, which is what makes resuming an interrupted extraction safe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipprobe import atomic
from clipprobe.errors import ClipprobeError
from clipprobe.labels import from_arrow, to_arrow

MANIFEST = "manifest.json"
SHARDS = "shards"


def shard_name(index: int) -> str:
    """A shard's path relative to its split's directory."""
    return f"{SHARDS}/part-{index:05d}.parquet"


def schema(dim: int, with_path: bool, label: pa.DataType = pa.int64()) -> pa.Schema:
    """`label` is int64, or for multi-label datasets a fixed-size list of int8 (see labels.py)."""
    cols = [pa.field("id", pa.int64()), pa.field("label", label),
            pa.field("embedding", pa.list_(pa.float32(), dim))]
    return pa.schema(cols + ([pa.field("path", pa.string())] if with_path else []))


def write_shard(directory: Path, index: int, ids, labels, embeddings: np.ndarray, paths=None) -> None:
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = emb.shape
    labels = np.asarray(labels)
    if labels.dtype == object:   # multi-label rows, as pyarrow's to_numpy hands them over
        labels = np.stack(labels) if len(labels) else np.zeros((0, 0), np.int8)
    label = to_arrow(labels)
    cols = [pa.array(np.asarray(ids, np.int64)), label,
            pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)]
    if paths is not None:
        cols.append(pa.array(paths, pa.string()))
    table = pa.Table.from_arrays(cols, schema=schema(dim, paths is not None, label.type))
    atomic.replace(directory / shard_name(index), lambda p: pq.write_table(table, p, compression="zstd"))


def write_manifest(directory: Path, manifest: dict) -> None:
    atomic.write_json(directory / MANIFEST, manifest)


def missing_shards(directory: Path, expected: int) -> list[int]:
    """Indices of the shards not yet written: what a resumed extraction computes (engines
    may finish shards out of order, so this is not only a tail)."""
    return [i for i in range(expected) if not (directory / shard_name(i)).is_file()]


def read_manifest(directory: Path) -> dict:
    return atomic.read_json(Path(directory) / MANIFEST, "run `dvc repro extract` (-f if it ran) first")


def read_features(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(embeddings float32 [n, dim], labels, ids, manifest) of one split; labels are class indices,
    or [n, classes] int8 rows for multi-label datasets (see labels.py)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    tables = [pq.read_table(directory / s) for s in manifest["shards"]]
    table = pa.concat_tables(tables) if tables else schema(manifest["embed_dim"], False).empty_table()
    if table.num_rows != manifest["rows"]:
        raise ClipprobeError(f"{directory}: shards hold {table.num_rows} rows, the manifest says "
                             f"{manifest['rows']}; rerun `dvc repro -f extract`")
    emb = table.column("embedding").combine_chunks()
    x = emb.values.to_numpy(zero_copy_only=False).reshape(len(emb), manifest["embed_dim"])
    _check_finite(x, table, directory)
    return (x.astype(np.float32, copy=False), from_arrow(table.column("label")),
            table.column("id").to_numpy(), manifest)


def _check_finite(x: np.ndarray, table: pa.Table, directory: Path) -> None:
    """Every stage that scores features reads them here: stop on NaN or inf (extraction refuses
    them; older features, or shards written by other tools, may hold them). One float64 sum is
    the quick test: NaN and inf survive it, finite float32 values cannot overflow it."""
    if np.isfinite(x.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(x).all(axis=1)
    i = int(np.argmax(bad))
    first = table.column("path")[i].as_py() if "path" in table.column_names else f"image id {table.column('id')[i]}"
    raise ClipprobeError(f"{directory}: {int(bad.sum())} of {len(x)} feature rows hold NaN or inf, the first "
                         f"{first}; the model that made them is broken (check model.weights), then rerun "
                         "`dvc repro -f extract`")


def read_train(features: Path) -> tuple[np.ndarray, np.ndarray, dict, tuple[np.ndarray, np.ndarray] | None]:
    """The train split's (features, labels, manifest) and, where the dataset has an official val
    split (`features/val/`), its (features, labels); else None: what the C search validates on and
    the final probe is fitted on with train."""
    x, y, _, manifest = read_features(Path(features) / "train")
    val = None
    if (Path(features) / "val").is_dir():
        x_val, y_val, _, _ = read_features(Path(features) / "val")
        val = (x_val, y_val)
    return x, y, manifest, val
