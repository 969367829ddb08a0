"""Files written whole or not at all: written under a temporary name beside the target, then
renamed over it, so a reader (or a later stage after a kill) sees the old file or the new one."""

from __future__ import annotations

import os
from pathlib import Path


def replace(path: Path, write) -> None:
    """`write(tmp)` a temporary file beside `path`, then rename it to `path`; the temporary is
    removed if writing fails."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """`text` into `path` (its folder made if missing), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace(path, lambda tmp: tmp.write_text(text, newline=""))
