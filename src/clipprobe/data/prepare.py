"""The `prepare` step: any source written into the prepared format.

`data/prepared/` (the format `data.prepared` reads) holds the first
`data.limit_per_class` images of each class per split, the user's images checked to decode before
any heavy work, written whole or not at all.  `wds:` shards and `hf:` datasets are indexed, not
copied: the table says where each image is in the source's own files (`data.wds`, `data.hf_datasets`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipprobe import atomic
from clipprobe.data import hf_datasets, imagefolder, indexed, registered, registry, sources, wds
from clipprobe.data import root as data_root
from clipprobe.data.sources import Split
from clipprobe.errors import ClipprobeError
from clipprobe.labels import positives, to_arrow
from clipprobe.metrics import TOP1
from clipprobe.params import DataParams


def _limit(labels: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the first n samples of each class, in split order (multi-label: an image is
    kept while one of its classes has fewer than n)."""
    if n is None:
        return np.arange(len(labels))
    keep, seen = [], {}
    for i, y in enumerate(labels.tolist()):
        present = np.flatnonzero(np.asarray(y) == 1).tolist() if labels.ndim == 2 else [y]
        if any(seen.get(k, 0) < n for k in present):
            for k in present:
                seen[k] = seen.get(k, 0) + 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _table(split: Split, keep: np.ndarray, sha256: dict[str, str] | None) -> pa.Table:
    ids = split.ids if split.ids is not None else np.arange(len(split.labels))
    cols = {"id": pa.array(ids[keep], pa.int64()),
            "label": to_arrow(split.labels[keep])}
    if split.columns is not None:   # an index into the source's files, each with its SHA-256
        cols.update({k: pa.array(sources.take(v, keep)) for k, v in split.columns.items()})
    elif split.paths is not None:
        cols["path"] = pa.array([split.paths[i] for i in keep.tolist()], pa.string())
        if sha256 is not None:  # a file's new content under the same name changes the table
            cols["sha256"] = pa.array([sha256[split.paths[i]] for i in keep.tolist()], pa.string())
    else:
        cols["image"] = pa.array([_png(split.images[i][0]) for i in keep.tolist()], pa.binary())
    return pa.table(cols)


def load_source(p: DataParams) -> sources.Source:
    """The source `data.name` names: a registry dataset (downloaded into `data.root` if missing),
    `wds:` shards, an `hf:` dataset, or an ImageFolder root.  The one place that tells them apart."""
    if indexed.kind(p.name) == "wds":
        return wds.load(p)
    if indexed.kind(p.name) == "hf":
        return hf_datasets.load(p)
    entry = registry.get(p.name)
    if entry is not None:
        root = data_root.resolve(p.root)
        root.mkdir(parents=True, exist_ok=True)
        splits, classes = registered.load(entry, root)
        return sources.Source(splits, classes, root, {"split": entry.split_text(), "split_source": entry.split_source,
                                              "metric": entry.metric, "multi_label": entry.multi_label}, named=True)
    root = Path(p.name)
    splits, classes = imagefolder.load(root)
    return sources.Source(splits, classes, root, {"split": "train/ and test/ folders", "metric": TOP1,
                                          "multi_label": False}, named=False)


def _require_images(p: DataParams, source: sources.Source, keeps: dict[str, np.ndarray]) -> None:
    """Stop unless every split has an image to use (an empty test/ would fail only in evaluate)."""
    root = source.root
    for s, keep in keeps.items():
        if not len(keep):
            if source.named:
                raise ClipprobeError(f"data.name={p.name}: its {s} split in {root} holds no images; delete "
                                     f"the dataset's files under data.root={p.root} to fetch them again")
            if indexed.kind(p.name):
                raise ClipprobeError(f"data.name={p.name}: its {s} split holds no samples; add some, or point "
                                     f"data.splits.{s} at another split")
            raise ClipprobeError(f"{root / s}: no usable images; put {s} images in {root / s}/<class>/ "
                                 "(the class folders of train/)")


def _require_disjoint(p: DataParams, source: sources.Source) -> None:
    """Stop where an indexed source's test (or val) file is byte-identical to one of another split (a
    shard copied into two split folders): the probe would be trained or tuned on its test images."""
    where: dict[str, tuple[str, str]] = {}
    for s, sp in source.splits.items():
        if sp.columns is None or "sha256" not in sp.columns:
            return
        files = sp.columns.get("shard", sp.columns.get("file"))
        for digest, f in dict(zip(sp.columns["sha256"], files)).items():
            other = where.setdefault(digest, (s, f))
            if other[0] != s:
                raise ClipprobeError(f"data.name={p.name}: {s} file {f} is byte-identical to {other[0]} file "
                                     f"{other[1]}: the same images would serve as {other[0]} and {s} images; remove "
                                     f"the copy, or point data.splits.{s} at the source's own {s} split")


def _check_files(p: DataParams, source: sources.Source, keeps: dict[str, np.ndarray]) -> tuple[list, dict]:
    """The user's own files, every one decoded before any heavy work: (the unreadable ones, skipped
    where data.skip_corrupt allows, else one error listing them; each split's SHA-256 by path)."""
    bad, sha256 = {}, {}
    for s, sp in source.splits.items():
        paths = [sp.paths[i] for i in keeps[s].tolist()]
        unreadable, digests = imagefolder.read_images(source.root, paths, max_pixels=p.max_pixels)
        bad[s], sha256[s] = set(unreadable), dict(zip(paths, digests))
    skipped = sorted(set().union(*bad.values()))
    if skipped and not p.skip_corrupt:
        more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise ClipprobeError(f"{len(skipped)} unreadable image(s) in {source.root}: {', '.join(skipped[:20])}{more}; "
                             "fix or delete them, or set data.skip_corrupt: true to skip them")
    for s, sp in source.splits.items():
        keeps[s] = np.asarray([i for i in keeps[s].tolist() if sp.paths[i] not in bad[s]], np.int64)
    return skipped, sha256


def prepare(p: DataParams, out: Path) -> dict:
    """Write the prepared splits of `p` into `out` (replaced atomically) and return its info."""
    source = load_source(p)
    _require_disjoint(p, source)
    splits, classes = source.splits, source.classes
    keeps = {s: _limit(sp.labels, p.limit_per_class) for s, sp in splits.items()}
    _require_images(p, source, keeps)
    files = not source.named and all(sp.paths is not None for sp in splits.values())
    skipped, sha256 = _check_files(p, source, keeps) if files else (source.skipped, {})
    for s, sp in splits.items():
        counts = positives(sp.labels[keeps[s]], len(classes))
        if s == "train" and (counts == 0).any():
            empty = [classes[i] for i in np.flatnonzero(counts == 0)]
            lost = (f" ({len(skipped)} damaged shard(s) skipped by data.skip_corrupt)"
                    if skipped and indexed.kind(p.name) else "")
            raise ClipprobeError(f"data.name={p.name}: no usable train images for class(es) "
                                 f"{', '.join(empty[:10])}{lost}; add images or remove the class")
    _require_images(p, source, keeps)

    info = {"dataset": p.name, "named": source.named, "root": str(source.root.resolve()), "classes": classes,
            "splits": {s: int(len(k)) for s, k in keeps.items()},
            "limit_per_class": p.limit_per_class, "max_pixels": p.max_pixels, "skipped": skipped,
            **source.provenance, **source.prompts}
    with atomic.folder(out) as tmp:
        for s, sp in splits.items():
            pq.write_table(_table(sp, keeps[s], sha256.get(s)), tmp / f"{s}.parquet")
        atomic.write_json(tmp / "info.json", info)
    return info
