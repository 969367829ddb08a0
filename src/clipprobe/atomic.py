"""Files and folders written whole or not at all.

Each is written under a temporary name beside the target, then renamed over it, so a reader (or a
later stage after a kill) sees the old version or the new one.

A full disk or an unwritable folder is one line naming the path (`ClipprobeError`; a full disk says
how much space the write needed and how much is free), and nothing partial stays behind."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from clipprobe.errors import ClipprobeError

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(ClipprobeError):
    """A write that did not fit on its disk."""


def fmt_size(n_bytes: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def free_space(path: Path) -> int:
    """Bytes free to this user on the filesystem `path` is (or would be) on."""
    for d in (Path(path), *Path(path).parents):
        if d.exists():
            return shutil.disk_usage(d).free
    return 0


def _size(path: Path) -> int:
    """Bytes in a file, or in the files of a folder tree (0 where there is nothing)."""
    try:
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def disk_full(path: Path, need: int | None = None, written: int = 0,
              fix: str = "free space there (or move the project to a larger disk)") -> DiskFull:
    """The one line for a disk too full to hold `path`: `need` bytes where known, else more than
    the `written` bytes that fitted before it filled (removed again: nothing partial stays)."""
    needs = (f"needs at least {fmt_size(need)}" if need else
             f"needs more than the {fmt_size(written)} written before it filled" if written else
             "needs more than that")
    return DiskFull(f"{path}: no space left on its disk ({fmt_size(free_space(path))} free); writing it {needs}; "
                    f"{fix}, then rerun")


def unwritable(path: Path, e: OSError, need: int | None = None, written: int = 0) -> ClipprobeError:
    """The one line for an OSError while writing `path`."""
    if e.errno in FULL:
        return disk_full(path, need, written)
    if isinstance(e, IsADirectoryError):
        return ClipprobeError(f"{path}: is a folder, not a file; give a file path, or remove the folder")
    return ClipprobeError(f"{path}: cannot write ({e.strerror or e}); fix the folder's permissions or free disk "
                          "space, then rerun")


def replace(path: Path, write, need: int | None = None) -> None:
    """`write(tmp)` a temporary file beside `path`, then rename it to `path`; the temporary is
    removed if writing fails.  `need`: the bytes it will hold, where known (for the full-disk line)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        written = _size(tmp)
        _discard(tmp)
        raise unwritable(path, e, need, written) from None
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
    replace(path, lambda tmp: tmp.write_text(text, newline=""), need=len(text.encode()))


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
    except DiskFull:   # a file inside did not fit: the line names the whole folder
        written = _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_full(out, written=written) from None
    except OSError as e:
        written = _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise unwritable(out, e, written=written) from None
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
        raise unwritable(out, e) from None


def read_json(path: Path, fix: str):
    """A JSON file a stage reads: missing or malformed, one line naming it and `fix` (e.g. which
    stage to rerun)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ClipprobeError(f"{path} is missing; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClipprobeError(f"{path} is malformed, not JSON ({e}); {fix}") from None
