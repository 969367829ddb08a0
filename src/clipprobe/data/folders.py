"""The walk of a user's ImageFolder: the class folders of a split and the files under each.

Light on purpose (os only): the `inputs` stage lists the folder on every `dvc repro` and must
see exactly the files that `prepare` reads, without importing what decodes them.
"""

from __future__ import annotations

import os
from pathlib import Path

from clipprobe.errors import ClipprobeError


def class_dirs(split_dir: Path) -> list[str]:
    """Sorted names of a split folder's class folders (hidden ones skipped)."""
    return sorted(e.name for e in _scan(split_dir) if e.is_dir() and not e.name.startswith("."))


def files_by_class(split_dir: Path, classes: list[str]) -> dict[str, list[os.DirEntry]]:
    """The files of each class folder of `split_dir`, in path order (a class the split lacks
    gets none).

    Symlinks are followed, but each real directory is entered once: a link to the split folder,
    to a class folder or to a directory already walked is skipped, so a loop (`cat/loop -> ..`)
    ends and no image is read twice or under another class's label.  Hidden files are skipped.
    """
    seen = {os.path.realpath(split_dir)} | {os.path.realpath(split_dir / c) for c in class_dirs(split_dir)}
    return {c: _walk(str(split_dir / c), seen) if (split_dir / c).is_dir() else [] for c in classes}


def _scan(d) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return list(it)
    except OSError as e:
        raise ClipprobeError(f"{d}: cannot list it ({e.strerror}); fix its permissions or remove it") from None


def _walk(top: str, seen: set[str]) -> list[os.DirEntry]:
    """Files under `top` in the order of `sorted(os.walk(top))`: by directory path, then name."""
    dirs, todo = [], [top]
    while todo:
        d = todo.pop()
        files = []
        for e in _scan(d):
            if e.is_dir():
                real = os.path.realpath(e.path)
                if real not in seen:
                    seen.add(real)
                    todo.append(e.path)
            elif not e.name.startswith("."):
                files.append(e)
        dirs.append((d, sorted(files, key=lambda e: e.name)))
    return [f for _, files in sorted(dirs, key=lambda t: t[0]) for f in files]
