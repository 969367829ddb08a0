"""Images where an indexed source keeps them: tar members at their offsets, rows of Arrow or Parquet files.

A `wds:` split's prepared table locates each image by `shard` (relative to info.json's `root`),
`member`, and the `offset` and `size` of the member's bytes in that tar; an `hf:` split's by `file`
(relative to `root`), `row` in that file and the image `column`.  Reading at the offset is what
lets extraction start at any row (a resumed feature shard, a Ray block): webdataset streams a
shard from its first member.  An `hf:` row is decoded by the `datasets` library's own Image
feature (EXIF orientation applied, as `datasets` shows the image).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clipprobe.errors import ClipprobeError

MEMBER = ("shard", "member", "offset", "size")
ROW = ("file", "row", "column")


def member_bytes(path: Path, offset: int, size: int) -> bytes:
    """The bytes of the tar member `prepare` indexed at `offset`."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise ClipprobeError(f"{path}: ends before the member prepare indexed at byte {offset}; the shard changed "
                             "since: rerun `dvc repro` (inputs notices it and prepare indexes it again)")
    return data


def hf_image_feature():
    try:
        from datasets.features import Image
    except ImportError:
        raise ClipprobeError("data.name=hf:...: reading Hugging Face datasets needs the datasets library: "
                             "pip install 'clipprobe[hf]'") from None
    return Image()


class RowFiles:
    """The Arrow and Parquet files of `hf:` splits, read by row.  Files open lazily, once per
    process (DataLoader workers fork), Arrow ones memory-mapped as `datasets` maps them; a Parquet
    file is read a row group at a time, the last one kept, since rows are asked for in order."""

    def __init__(self):
        self._pid, self._files, self._group = None, {}, (None, None, None)

    def _arrow(self, path: Path) -> pa.Table:
        if self._pid != os.getpid():
            self._pid, self._files, self._group = os.getpid(), {}, (None, None, None)
        if path not in self._files:
            source = pa.memory_map(str(path))
            try:   # datasets writes Arrow streams; an Arrow file (IPC file format) reads as well
                self._files[path] = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                self._files[path] = pa.ipc.open_file(source).read_all()
        return self._files[path]

    def _parquet(self, path: Path, row: int, column: str):
        if self._pid != os.getpid():
            self._pid, self._files, self._group = os.getpid(), {}, (None, None, None)
        key, start, table = self._group
        if key is None or key[0] != path or key[1] != column or not start <= row < start + table.num_rows:
            f = self._files.get(path) or self._files.setdefault(path, pq.ParquetFile(path))
            start = 0
            for g in range(f.metadata.num_row_groups):
                n = f.metadata.row_group(g).num_rows
                if row < start + n:
                    break
                start += n
            table = f.read_row_group(g, columns=[column])
            self._group = ((path, column), start, table)
        return table.column(column)[row - start].as_py()

    def value(self, path: Path, row: int, column: str):
        """The stored value: a `{bytes, path}` mapping (an Image feature) or the bytes of a binary column."""
        if path.suffix == ".parquet":
            return self._parquet(path, row, column)
        return self._arrow(path).column(column)[row].as_py()

    def image(self, path: Path, row: int, column: str):
        value = self.value(path, row, column)
        return hf_image_feature().decode_example({"bytes": value, "path": None} if isinstance(value, bytes) else value)

    def encoded(self, path: Path, row: int, column: str) -> bytes:
        """The image file's bytes as stored (an Image feature that holds only a path: that file's)."""
        value = self.value(path, row, column)
        if isinstance(value, bytes):
            return value
        return value["bytes"] if value.get("bytes") is not None else Path(value["path"]).read_bytes()
