"""WebDataset shards (`data.name: wds:<pattern>`) as a source: an index of each split's samples, not a copy.

CLIP_benchmark's layout: a sample's image under an image key (`webp`, `png`, `jpg`, ... the
extensions webdataset decodes as images) and its class index as text under `cls`; `classnames.txt`
(one name per line, in label order) and optionally `zeroshot_classification_templates.txt` (one
template per line, `{c}` where the name goes) beside the shards (see `data.indexed`).  Members group
into samples by webdataset's own rule (`base_plus_ext`: the key is the path up to the file name's
first dot; consecutive members with one key are one sample).

The index holds, per sample, its shard, image member, and the member's offset and size in the tar,
plus the shard's SHA-256.  Python's `tarfile` reads them: webdataset only streams a shard member by
member, reading every byte, while `tarfile`'s seekable mode reads the 512-byte headers and skips the
images, and the index needs their offsets (`data.located` reads at them).  Shards are scanned in
worker processes, one shard per task.
"""

from __future__ import annotations

import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from webdataset.autodecode import IMAGE_EXTENSIONS
from webdataset.tariterators import base_plus_ext, meta_prefix, meta_suffix

from clipprobe import hashcache
from clipprobe.data import indexed
from clipprobe.data.sources import Source, Split
from clipprobe.errors import ClipprobeError
from clipprobe.metrics import TOP1
from clipprobe.params import DataParams

# CLIP_benchmark's order of preference where a sample has several, then the rest of webdataset's
_FIRST = ("webp", "png", "jpg", "jpeg")
IMAGE_KEYS = _FIRST + tuple(e for e in IMAGE_EXTENSIONS if e not in _FIRST)
LABEL_KEY = "cls"


@dataclass
class Scan:
    """One shard's samples: their keys, image members, offsets, sizes and labels; and what was
    wrong with the shard where it is damaged (the samples before the damage are intact)."""
    keys: list[str]
    members: list[str]
    offsets: list[int]
    sizes: list[int]
    labels: list[int]
    damage: str | None = None


def _label(tar: tarfile.TarFile, shard: Path, key: str, member: tarfile.TarInfo) -> int:
    tar.fileobj.seek(member.offset_data)   # a few bytes where tarfile says they are (extractfile costs more)
    text = tar.fileobj.read(member.size).decode("utf-8", "replace").strip()
    try:
        return int(text)
    except ValueError:
        raise ClipprobeError(f"{shard}: sample {key}'s label {member.name} holds {text[:40]!r}, not a class index "
                             "(an integer, as webdataset writes `cls`)") from None


def _sample(tar, shard: Path, key: str, members: dict[str, tarfile.TarInfo], scan: Scan) -> None:
    image = next((members[k] for k in IMAGE_KEYS if k in members), None)
    if image is None:
        names = ", ".join(m.name for m in members.values())
        raise ClipprobeError(f"{shard}: sample {key} has no image (members {names}; "
                             f"image keys: {', '.join(IMAGE_KEYS[:6])}, ...); add its image or remove the sample")
    if LABEL_KEY not in members:
        raise ClipprobeError(f"{shard}: sample {key} has no label ({key}.{LABEL_KEY}, its class index); add it or "
                             "remove the sample")
    scan.keys.append(key)
    scan.members.append(image.name)
    scan.offsets.append(image.offset_data)
    scan.sizes.append(image.size)
    scan.labels.append(_label(tar, shard, key, members[LABEL_KEY]))


def _meta(m: tarfile.TarInfo) -> bool:
    """What webdataset skips: non-files and top-level `__name__` metadata."""
    return not m.isreg() or ("/" not in m.name and m.name.startswith(meta_prefix) and m.name.endswith(meta_suffix))


def scan(shard: Path) -> Scan:
    """The samples of one shard, in member order; a shard that is not a tar, or is cut short or
    damaged mid-way, comes back with its intact samples and what is wrong (`Scan.damage`)."""
    out = Scan([], [], [], [], [])
    with open(shard, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            out.damage = "gzip-compressed (the index reads members at their offsets: store shards as plain .tar)"
            return out
    size = shard.stat().st_size
    try:
        tar = tarfile.open(shard, "r:")
    except tarfile.TarError as e:
        out.damage = f"not a tar archive ({e})"
        return out
    with tar:
        key, members, last = None, {}, "(none)"
        while True:   # the sample being read where the damage is may be incomplete: it is left out
            try:
                m = tar.next()
            except tarfile.TarError as e:
                out.damage = f"unreadable after member {last} ({e})"
                return out
            if m is None:   # tarfile also stops quietly at a header it cannot parse: only zeros may follow
                tar.fileobj.seek(tar.offset)
                if tar.fileobj.read(1024).strip(b"\0"):
                    out.damage = f"truncated or damaged after member {last}"
                    return out
                break
            last = m.name
            prefix, suffix = base_plus_ext(m.name)
            if _meta(m) or prefix is None:
                continue
            if key is not None and prefix != key:
                _sample(tar, shard, key, members, out)
                members = {}
            if m.offset_data + m.size > size:
                out.damage = f"truncated in member {m.name} ({size - m.offset_data} of its {m.size} bytes present)"
                return out
            key = prefix
            members[suffix.lower()] = m
            tar.members = []   # headers are not kept: a shard may hold many members
        if key is not None:
            _sample(tar, shard, key, members, out)
    return out


def _scan_all(shards: list[Path]) -> list[Scan]:
    if len(shards) < 4:
        return [scan(s) for s in shards]
    with ProcessPoolExecutor(min(len(shards), os.cpu_count() or 1)) as pool:
        return list(pool.map(scan, shards))


def _classes(name: str, shard: Path, root: Path) -> list[str]:
    path = indexed.beside(shard, root, indexed.CLASSNAMES)
    if path is None:
        raise ClipprobeError(f"data.name={name}: no {indexed.CLASSNAMES} beside the shards ({shard.parent} or a "
                             f"folder above it, up to {root}); write one class name per line, in label order, "
                             "as CLIP_benchmark's shard sets have it")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(classes) < 2:
        raise ClipprobeError(f"{path}: {len(classes)} class name(s); a probe needs at least 2, one per line")
    return classes


def _templates(shard: Path, root: Path) -> dict:
    path = indexed.beside(shard, root, indexed.TEMPLATES)
    if path is None:
        return {}
    templates = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            if line.count("{c}") != 1:
                raise ClipprobeError(f"{path}:{n}: template {line.strip()!r} needs exactly one {{c}} where the class "
                                     "name goes (CLIP_benchmark's form)")
            templates.append(line.strip().replace("{c}", "{}"))
    return {"templates": templates, "templates_source": str(path.resolve())} if templates else {}


def load(p: DataParams) -> Source:
    """The splits of `p.name`'s shards as an index: every sample's location, label, and its shard's SHA-256."""
    pattern = indexed.wds_pattern(p.name)
    root, shards = indexed.wds_root(pattern), indexed.wds_shards(p.name, p)
    classes = _classes(p.name, shards["train"][0], root)
    every = [s for paths in shards.values() for s in paths]
    scans, digests = dict(zip(every, _scan_all(every))), dict(zip(every, hashcache.sha256s(every)))
    splits, skipped = {}, []
    for split, paths in shards.items():
        cols = {"shard": [], "member": [], "offset": [], "size": [], "sha256": []}
        labels = []
        for path in paths:
            found, digest = scans[path], digests[path]
            if found.damage:
                if not p.skip_corrupt:
                    raise ClipprobeError(f"{path}: {found.damage}; re-copy or rewrite the shard, or set "
                                         "data.skip_corrupt: true to index its intact samples only")
                skipped.append(f"{os.path.relpath(path, root)}: {found.damage}")
            bad = [(k, y) for k, y in zip(found.keys, found.labels) if not 0 <= y < len(classes)]
            if bad:
                raise ClipprobeError(f"{path}: sample {bad[0][0]} has label {bad[0][1]}, outside the {len(classes)} "
                                     f"classes of {indexed.CLASSNAMES} (0..{len(classes) - 1}); fix the label or "
                                     "the class list")
            rel = os.path.relpath(path, root)
            n = len(found.keys)
            cols["shard"] += [rel] * n
            cols["member"] += found.members
            cols["offset"] += found.offsets
            cols["size"] += found.sizes
            cols["sha256"] += [digest] * n
            labels += found.labels
        cols["offset"], cols["size"] = (np.asarray(cols[k], np.int64) for k in ("offset", "size"))
        splits[split] = Split(labels=np.asarray(labels, np.int64), columns=cols)
    names = indexed.split_names(p)
    text = "; ".join(f"{s}: {names[s]} ({len(paths)} shard{'s' * (len(paths) > 1)})" for s, paths in shards.items())
    return Source(splits, classes, root, {"split": f"{pattern} with {text}", "metric": TOP1, "multi_label": False},
                  named=False, skipped=skipped, prompts=_templates(shards["train"][0], root))
