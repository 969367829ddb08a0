"""What the `inputs` stage writes down: the user's files that DVC cannot see in params.yaml.

The files behind `data.name`, `model.name` and `model.weights` are listed or hashed so that DVC
compares them by content; the model params are checked here too.

The `inputs` stage runs on every `dvc repro` (`always_changed`), and first, so it stays cheap (it
imports no torch and decodes nothing) and it is where `data.name` is checked against the registry
and `model.name` / `model.weights` against the model source (`encode.names`): a typo, or pretrained
weights that cannot be had offline, stop here, in seconds, before `prepare` downloads anything.  It writes
- the data listing: every file of an ImageFolder that `prepare` reads (the walk is
  `folders.files_by_class`, prepare's own), one `path size mtime_ns` line each; for `wds:` and
  `hf:` sources every shard or dataset file with its SHA-256 too (`hashcache`: read once, then
  looked up by path, size and mtime), since `prepare` indexes them without reading their images;
  `prepare` depends on it, so an added, removed, renamed or rewritten image or shard reruns it;
- the model record: `model.name` and `model.weights`, with the SHA-256 of each file they name (and
  of each file of a Hugging Face model directory); `extract` depends on it, so a checkpoint, config
  or model directory changed in place reruns extraction.
Where nothing changed, both come out byte-identical and DVC reruns nothing after them.
"""

from __future__ import annotations

import os
from pathlib import Path

from clipprobe import hashcache
from clipprobe.data import folders, indexed, registry
from clipprobe.encode import names
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams, ModelParams


def check_dataset(name: str) -> bool:
    """Whether `data.name` is a registry dataset (else an ImageFolder root, `wds:` or `hf:`)."""
    if registry.get(name) is not None:
        return True
    if indexed.kind(name) is None and not Path(name).is_dir():
        raise ClipprobeError(f"params.yaml: data.name must be one of {', '.join(registry.names())}, an "
                             f"existing ImageFolder root with train/ and test/, wds:<shard pattern> or "
                             f"hf:<dataset>, got {name!r}")
    return False


def data_listing(p: DataParams, cache: Path = hashcache.SHA256_CACHE) -> str:
    """The ImageFolder's files as `path<TAB>size<TAB>mtime_ns` lines, a `wds:` or `hf:` source's
    files with a fourth column, their SHA-256 (a header only for a named dataset or a hub repo id,
    which `data.*` params identify)."""
    if indexed.kind(p.name) is not None:
        root, files = indexed.files(p)
        lines = ["path\tsize\tmtime_ns\tsha256"]
        for f, digest in zip(files, hashcache.sha256s(files, cache)):
            st = f.stat()
            lines.append(f"{os.path.relpath(f, root)}\t{st.st_size}\t{st.st_mtime_ns}\t{digest}")
        return "\n".join(lines) + "\n"
    lines = ["path\tsize\tmtime_ns"]
    if not check_dataset(p.name):
        root = Path(p.name)
        train_classes = folders.class_dirs(root / "train") if (root / "train").is_dir() else []
        for split in ("train", "test"):
            d = root / split
            if not d.is_dir():
                continue
            for files in folders.files_by_class(d, sorted(set(train_classes) | set(folders.class_dirs(d)))).values():
                for f in files:
                    st = _stat(f)
                    lines.append(f"{os.path.relpath(f.path, root)}\t{st.st_size}\t{st.st_mtime_ns}")
    return "\n".join(lines) + "\n"


def _stat(entry: os.DirEntry) -> os.stat_result:
    try:
        return entry.stat()
    except OSError:  # a broken link: prepare reports it as unreadable
        return entry.stat(follow_symlinks=False)


def model_record(p: ModelParams, cache: Path = hashcache.SHA256_CACHE) -> dict:
    """`model.name` and `model.weights`, checked (`encode.names`: a typo, a tag the model lacks, or
    weights neither cached nor downloadable stop here, before `prepare`), with the content hash of
    each file they name: a checkpoint, a model-config JSON, every file of a Hugging Face model
    directory; and the cached revision of weights from the Hugging Face hub."""
    named = names.check(p.name, p.weights)
    record = {"name": p.name, "weights": p.weights}
    if named.config is not None:
        record["name_sha256"] = hashcache.sha256(named.config, cache)
    if named.path is not None:
        record["weights_sha256"] = hashcache.sha256(named.path, cache)
    if named.source == "hf" and Path(named.arch).is_dir():
        folder = Path(named.arch)
        record["name_files"] = {f.name: hashcache.sha256(f, cache) for f in sorted(folder.iterdir())
                                if f.is_file() and not f.name.startswith(".")}
    if named.cached and names.hub_revision(named.cache):
        record["weights_revision"] = names.hub_revision(named.cache)
    return record
