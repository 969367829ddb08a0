"""Where downloaded datasets live, and how concurrent experiments share them safely.

`data.root: auto` is the user's cache directory (`$XDG_CACHE_HOME/clipprobe/data`, by default
`~/.cache/clipprobe/data` on Linux; platformdirs' cache directory elsewhere), outside every DVC
workspace: each queued experiment runs in its own copy of the workspace, and a root inside it
would download every dataset once per experiment. Any other value is a directory path
(relative paths are relative to the workspace the stage runs in).

`fetch` downloads a dataset at most once per root however many processes ask at the same time:
one file lock per dataset, and the download goes into a staging directory that is renamed into
place only once complete, so a killed download never leaves a half copy where a reader looks.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import platformdirs
from filelock import FileLock, Timeout

AUTO = "auto"
T = TypeVar("T")


def default_root() -> Path:
    return platformdirs.user_cache_path("clipprobe") / "data"


def resolve(root: str) -> Path:
    """The directory `data.root` names (`auto` = `default_root()`)."""
    return default_root() if root == AUTO else Path(root)


@contextmanager
def locked(root: Path, name: str):
    """Hold the lock of dataset `name` under `root` (an OS file lock: a killed holder releases it)."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"{name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process preparing {name} in {root}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def fetch(root: Path, name: str, build: Callable[[Path, bool], T]) -> T:
    """The dataset `build(root, False)` opens, downloaded first if it is missing.

    `build(directory, download)` opens the dataset stored in `directory` (torchvision style: it
    raises when `download` is False and the files are missing or incomplete) and
    downloads it there first when `download` is True. A missing dataset is downloaded into a
    staging directory under `root`, whose entries then replace those of `root` by rename; all of
    it under the dataset's lock, so concurrent callers wait and then find the finished copy.
    """
    root.mkdir(parents=True, exist_ok=True)
    with locked(root, name):
        for stale in root.glob(f".partial-{name}-*"):   # left by a killed download; the lock is ours
            shutil.rmtree(stale, ignore_errors=True)
        try:
            return build(root, False)
        except Exception:   # torchvision raises RuntimeError, OSError, ValueError, ... for missing files
            pass
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{name}-", dir=root))
        try:
            build(staging, True)
            for entry in sorted(staging.iterdir()):
                target = root / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)   # an incomplete copy from before; nobody else reads it now
                os.replace(entry, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return build(root, False)
