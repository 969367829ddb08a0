"""File hashes cached by (path, size, mtime_ns), as DVC caches its own: a rerun rereads no unchanged file.

The `inputs` stage hashes the user's files with it (checkpoints, model configs, shards and dataset
files) and `prepare` asks again for the shards it indexes: the second time is a lookup.  Light on
purpose (no numpy, no torch): `inputs` runs on every `dvc repro`.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clipprobe import atomic
from clipprobe.digest import file_sha256

SHA256_CACHE = Path(".cache/clipprobe/sha256.json")


def sha256s(paths: list[Path], cache: Path = SHA256_CACHE) -> list[str]:
    """Each file's SHA-256, recomputed only where its (path, size, mtime_ns) changed.  Files to hash
    are read on threads (hashlib releases the GIL), and the cache is read and written once."""
    try:
        known = json.loads(Path(cache).read_text())
    except (OSError, ValueError):
        known = {}
    keys, todo = [], []
    for path in paths:
        st = Path(path).stat()
        key, stamp = str(Path(path).resolve()), [st.st_size, st.st_mtime_ns]
        keys.append(key)
        if known.get(key, {}).get("stamp") != stamp:
            todo.append((key, stamp, path))
    if todo:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(file_sha256, [p for _, _, p in todo]))
        for (key, stamp, _), digest in zip(todo, digests):
            known[key] = {"stamp": stamp, "sha256": digest}
        atomic.write_json(cache, known)
    return [known[k]["sha256"] for k in keys]


def sha256(path: Path, cache: Path = SHA256_CACHE) -> str:
    return sha256s([path], cache)[0]
