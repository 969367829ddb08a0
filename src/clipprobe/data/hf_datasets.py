"""Hugging Face datasets (`data.name: hf:<dataset>`) as a source: an index of each split's rows, not a copy.

`hf:<folder>` is a dataset saved with `save_to_disk` (opened by `datasets.load_from_disk`, whose
Arrow files are indexed in place) or a folder of Parquet files, whose splits `datasets` resolves
from the file names as `load_dataset` does (`train-*.parquet`, `data/test-*`, ...) and whose files
are indexed in place, without `load_dataset`'s conversion into its Arrow cache (a second copy);
`hf:<repo id>` is `datasets.load_dataset(<repo id>)`, which downloads into and reads from the
Hugging Face cache.  `data.splits.*` name the source's splits, `data.image_column` and
`data.label_column` its columns; the class names are the label feature's (`ClassLabel`), or for
a column of strings the sorted distinct values.  Each row is located by file and row
(`data.located`), with the file's SHA-256.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipprobe import hashcache
from clipprobe.data import indexed
from clipprobe.data.sources import Source, Split
from clipprobe.errors import ClipprobeError
from clipprobe.metrics import TOP1
from clipprobe.params import DataParams


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ClipprobeError("data.name=hf:...: Hugging Face datasets need the datasets library: "
                             "pip install 'clipprobe[hf]'") from None
    return datasets


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_unless_reachable(datasets) -> None:
    """Where the Hub cannot be reached, `datasets` in offline mode: it reads its cache or fails at
    once, instead of retrying each request for half a minute."""
    if not datasets.config.HF_HUB_OFFLINE and not _hub_reachable():
        import huggingface_hub.constants

        datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True


def _open(name: str) -> tuple[dict[str, list[Path]], dict]:
    """Each split's Arrow or Parquet files in row order, and each split's features."""
    datasets = _datasets()
    root = indexed.hf_dir(name)
    where = name[len(indexed.HF):]
    try:
        if root is not None and ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(root))
            if isinstance(loaded, datasets.Dataset):
                raise ClipprobeError(f"data.name={name}: a single saved split; save a DatasetDict with its train and "
                                     "test splits (DatasetDict({'train': ..., 'test': ...}).save_to_disk)")
        elif root is not None:
            builder = datasets.load_dataset_builder(str(root))
            if builder.name not in ("parquet", "arrow"):
                raise ClipprobeError(f"data.name={name}: {root} holds {builder.name} files, not a saved dataset or "
                                     "Parquet files; for a folder of images per class use data.name: <folder>")
            files = {s: [Path(f) for f in fs] for s, fs in builder.config.data_files.items()}
            return files, {s: _file_features(datasets, fs[0]) for s, fs in files.items()}
        else:
            _offline_unless_reachable(datasets)
            loaded = datasets.load_dataset(where)
    except ClipprobeError:
        raise
    except Exception as e:  # datasets raises FileNotFoundError, ConnectionError, ValueError, ... (offline, bad data)
        raise ClipprobeError(f"data.name={name}: datasets cannot open it ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); check the path or repo id (a repo id "
                             "needs the network the first time)") from None
    files = {}
    for s, d in loaded.items():
        if d._indices is not None:   # rows selected or shuffled without flatten_indices(): not in file order
            d = d.flatten_indices()
        files[s] = [Path(c["filename"]) for c in d.cache_files]
    return files, {s: d.features for s, d in loaded.items()}


def _file_features(datasets, path: Path):
    schema = pq.read_schema(path) if path.suffix == ".parquet" else _arrow(path).schema
    return datasets.Features.from_arrow_schema(schema)


def _arrow(path: Path) -> pa.Table:
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source).read_all()


def _column(path: Path, column: str) -> pa.ChunkedArray:
    return pq.read_table(path, columns=[column]).column(column) if path.suffix == ".parquet" \
        else _arrow(path).column(column)


def _check_columns(p: DataParams, split: str, features) -> None:
    datasets = _datasets()
    for key in ("image_column", "label_column"):
        col = getattr(p, key)
        if col not in features:
            raise ClipprobeError(f"data.{key}={col}: {p.name} split {split} has no such column; its columns: "
                                 f"{', '.join(features)}")
    image = features[p.image_column]
    if not (isinstance(image, datasets.Image) or getattr(image, "dtype", None) in ("binary", "large_binary")):
        raise ClipprobeError(f"data.image_column={p.image_column}: {p.name} split {split} holds {image} there, not "
                             f"images; its columns: {', '.join(features)}")


def _classes(p: DataParams, features, labels: dict[str, list]) -> tuple[list[str], dict | None]:
    """The class names, and for string labels the mapping of each to its index."""
    datasets = _datasets()
    feature = features[p.label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), None
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        names = sorted({v for values in labels.values() for v in values if v is not None})
        train = [v for v in labels["train"] if v is not None]
        if len(train) >= 10 and len(set(train)) == len(train):
            raise ClipprobeError(f"data.label_column={p.label_column}: its {len(train)} train values are all "
                                 "different (free text, not class labels?); set data.label_column to the column "
                                 "that names each image's class")
        return names, {n: i for i, n in enumerate(names)}
    if dtype is not None and dtype.startswith(("int", "uint")):
        present = [v for vs in labels.values() for v in vs if v is not None]
        top, low = max(present, default=-1), min(present, default=0)
        if low > 0:
            raise ClipprobeError(f"data.label_column={p.label_column}: its integer labels run {low}..{top}, and "
                                 f"integer labels are class indices from 0 (class 0 would have no image); shift "
                                 "them to start at 0, or cast the column to a ClassLabel with the class names")
        return [str(i) for i in range(top + 1)], None
    raise ClipprobeError(f"data.label_column={p.label_column}: {p.name} holds {feature} there, not class labels "
                         "(a ClassLabel, integers or strings)")


def _same_classes(p: DataParams, classes: list[str], feature, split: str) -> list[int] | None:
    """Where a split's ClassLabel lists train's classes in another order, its index -> train's (None:
    the same order, or labels that are not a ClassLabel); other class names stop here."""
    names = getattr(feature, "names", None)
    if names is None or list(names) == classes:
        return None
    if sorted(names) != sorted(classes):
        extra = sorted(set(names) ^ set(classes))
        raise ClipprobeError(f"data.label_column={p.label_column}: split {split}'s class names differ from the "
                             f"train split's ({', '.join(extra[:5])} in only one of them); give every split the "
                             "same ClassLabel")
    return [classes.index(n) for n in names]


def _require_embedded(p: DataParams, path: Path) -> None:
    """Stop where a Parquet file's image column holds file paths instead of image bytes: those files
    are outside what clipprobe hashes, so an edit to one would go unseen."""
    if path.suffix != ".parquet":   # save_to_disk writes Arrow files with the images embedded
        return
    meta = pq.ParquetFile(path).metadata
    leaf = f"{p.image_column}.bytes"
    cols = [i for i in range(meta.num_columns) if meta.row_group(0).column(i).path_in_schema == leaf] \
        if meta.num_row_groups else []
    if not cols:
        return
    stats = [meta.row_group(g).column(cols[0]).statistics for g in range(meta.num_row_groups)]
    missing = sum(s.null_count for s in stats) if all(s is not None and s.has_null_count for s in stats) else \
        pq.read_table(path, columns=[leaf]).column(0).null_count
    if missing:
        raise ClipprobeError(f"{path}: {missing} image(s) of column {p.image_column} are file paths, not image bytes; "
                             "clipprobe would not see those files change: save the dataset with save_to_disk (which "
                             "embeds the images) and give that folder")


def load(p: DataParams) -> Source:
    """The splits of `p.name` as an index: every row's file and row in it, its label, the file's SHA-256."""
    files, features = _open(p.name)
    wanted = indexed.split_names(p)
    for split, source in wanted.items():
        if source not in files and split != "val":
            raise ClipprobeError(f"data.splits.{split}={source}: {p.name} has no split {source}; its splits: "
                                 f"{', '.join(map(str, files))}")
    wanted = {s: n for s, n in wanted.items() if n in files}
    for split, source in wanted.items():
        _check_columns(p, source, features[source])
        for f in files[source]:
            _require_embedded(p, f)
    per_file = {s: [_column(f, p.label_column).to_pylist() for f in files[n]] for s, n in wanted.items()}
    classes, index = _classes(p, features[wanted["train"]], {s: sum(v, []) for s, v in per_file.items()})
    remap = {s: _same_classes(p, classes, features[n][p.label_column], n) for s, n in wanted.items()}
    if len(classes) < 2:
        raise ClipprobeError(f"data.label_column={p.label_column}: {p.name} has {len(classes)} class(es); a probe "
                             "needs at least 2")
    local = indexed.hf_dir(p.name)
    all_files = [f for s in wanted.values() for f in files[s]]
    root = local if local is not None else Path(os.path.commonpath([str(f.parent) for f in all_files]))
    digests = dict(zip(all_files, hashcache.sha256s(all_files)))
    splits = {}
    for split, source in wanted.items():
        cols, labels = {"file": [], "row": [], "column": [], "sha256": []}, []
        for path, values in zip(files[source], per_file[split]):
            ys = [index.get(v, -1) if index is not None else (-1 if v is None else v) for v in values]
            if remap[split] is not None:   # the split's own ClassLabel order -> train's
                ys = [remap[split][y] if 0 <= y < len(remap[split]) else -1 for y in ys]
            bad = next((r for r, y in enumerate(ys) if not 0 <= y < len(classes)), None)
            if bad is not None:
                raise ClipprobeError(f"{path}: row {bad} of split {source} has label {values[bad]!r}, outside the "
                                     f"{len(classes)} classes of {p.label_column} (0..{len(classes) - 1}); fix the "
                                     "label or drop the row")
            rel = os.path.relpath(path, root)
            cols["file"] += [rel] * len(ys)
            cols["row"] += range(len(ys))
            cols["column"] += [p.image_column] * len(ys)
            cols["sha256"] += [digests[path]] * len(ys)
            labels += ys
        cols["row"] = np.asarray(cols["row"], np.int64)
        splits[split] = Split(labels=np.asarray(labels, np.int64), columns=cols)
    text = "; ".join(f"{s}: split {n}" for s, n in wanted.items())
    return Source(splits, classes, root, {"split": text, "metric": TOP1, "multi_label": False}, named=False)
