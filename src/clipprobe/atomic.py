"""Files and folders written whole or not at all.

Each is written under a temporary name beside the target, then renamed over it, so a reader (or a
later stage after a kill) sees the old version or the new one.

A full disk or an unwritable folder is one line naming the path (`ClipprobeError`), and nothing
partial stays behind."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from clipprobe.errors import ClipprobeError


def _unwritable(path: Path, e: OSError) -> ClipprobeError:
    return ClipprobeError(f"{path}: cannot write ({e.strerror or e}); free disk space or fix the folder's "
                          "permissions, then rerun")


def replace(path: Path, write) -> None:
    """`write(tmp)` a temporary file beside `path`, then rename it to `path`; the temporary is
    removed if writing fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise _unwritable(path, e) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:   # its folder could not be made: nothing to remove
        pass


def write_text(path: Path, text: str) -> None:
    """`text` into `path` (its folder made if missing), atomically."""
    replace(path, lambda tmp: tmp.write_text(text, newline=""))


def write_json(path: Path, data) -> None:
    """`data` as indented JSON with a final newline, atomically: the one JSON writer."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buf.getvalue())


def _swap(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` at `out`, replacing what was there: a killed process leaves
    `out` old, absent, or new, never half written."""
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def folder(out: Path):
    """A temporary folder beside `out` to fill; on success it becomes `out` (the old one removed),
    on failure it is deleted and `out` is left as it was."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        _swap(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _unwritable(out, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_folder(src: Path, out: Path) -> None:
    """Move the finished folder `src` to `out` (replacing it) atomically: by rename on one
    filesystem, else copied beside `out` first."""
    src, out = Path(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.rename(src, tmp)
    except OSError:   # another filesystem
        with folder(out) as t:
            shutil.copytree(src, t, dirs_exist_ok=True)
        shutil.rmtree(src, ignore_errors=True)
        return
    try:
        _swap(tmp, out)
    except OSError as e:
        raise _unwritable(out, e) from None
