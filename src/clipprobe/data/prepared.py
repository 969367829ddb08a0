"""The prepared format, read side: what every stage after `prepare` reads of `data/prepared/`.

One Parquet table per split (`train`, `test`, and `val` where the dataset has an official one) with
columns `id` (index in the source split), `label` (see labels.py), and either `image` (PNG bytes, for
array-backed datasets), `path` (relative to `info.json`'s `root`, with the file's `sha256`), or for
`wds:` and `hf:` sources, an index into their own files (`data.located`; with each file's `sha256`),
plus `info.json`: the dataset's identity (name, classes, headline metric, split mapping, whether it
is a registry dataset; an indexed source's own zero-shot `templates`).  Extraction and the text stage
import this module, never the dataset loaders, so fixing a loader reruns `prepare` and nothing after
it while its output is the same.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipprobe.data import located
from clipprobe.errors import ClipprobeError
from clipprobe.labels import from_arrow, positives


def read_info(prepared: Path) -> dict:
    path = Path(prepared) / "info.json"
    if not path.is_file():
        raise ClipprobeError(f"{path} is missing; run `dvc repro prepare` first")
    return json.loads(path.read_text())


def read_split(prepared: Path, split: str) -> pa.Table:
    return pq.read_table(Path(prepared) / f"{split}.parquet")


def classes_without_images(prepared: Path, split: str, classes: list[str]) -> list[str]:
    labels = from_arrow(pq.read_table(Path(prepared) / f"{split}.parquet", columns=["label"]).column("label"))
    return [c for c, n in zip(classes, positives(labels, len(classes))) if n == 0]


def split_rows(prepared: Path, split: str) -> int:
    return pq.ParquetFile(Path(prepared) / f"{split}.parquet").metadata.num_rows


def iter_split(prepared: Path, split: str, rows: int):
    """The split's rows as consecutive tables of `rows` rows (the last may be shorter), read
    as a stream so that memory follows `rows`, not the size of the split."""
    f = pq.ParquetFile(Path(prepared) / f"{split}.parquet")
    pending, n = [], 0
    for batch in f.iter_batches(batch_size=rows):
        pending.append(batch)
        n += batch.num_rows
        while n >= rows:
            table = pa.Table.from_batches(pending, f.schema_arrow)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, n = rest.to_batches(), rest.num_rows
    if n:
        yield pa.Table.from_batches(pending, f.schema_arrow)


# Pillow opens 16-bit grayscale as I;16 (some versions and formats: I, 32-bit integers holding 0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(im: Image.Image) -> Image.Image:
    """The image as 8-bit RGB, as a viewer shows it: 16-bit grayscale scaled by 255/65535
    (`convert("RGB")` clips every value above 255, which turns most such images white);
    grayscale and palette images become RGB."""
    if im.mode in SIXTEEN_BIT_MODES:
        scaled = np.rint(np.asarray(im, dtype=np.float64) / 257)  # 65535 / 255 = 257
        im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def location_columns(names) -> list[str]:
    """The columns that say where a prepared row's image is: `image` (its bytes), `path`, or those of
    an indexed source (`data.located`)."""
    for cols in (("image",), ("path",), located.MEMBER, located.ROW):
        if set(cols) <= set(names):
            return list(cols)
    raise ClipprobeError(f"a prepared table with columns {', '.join(names)} locates no image; "
                         "rerun `dvc repro prepare`")


def sample_paths(table: pa.Table) -> list[str] | None:
    """Where each row's image is, for the feature store's `path` column: its file, or its tar member
    as `shard/member`; None where the table or a dataset row holds it."""
    if "path" in table.column_names:
        return table.column("path").to_pylist()
    if "member" in table.column_names:
        return [f"{s}/{m}" for s, m in zip(table.column("shard").to_pylist(), table.column("member").to_pylist())]
    return None


class SplitImages:
    """A map-style dataset over a prepared split: (transformed image, row index)."""

    def __init__(self, table: pa.Table, root: str | Path, transform):
        self.root = Path(root)
        self.transform = transform
        columns = location_columns(table.column_names)
        self.column = columns[0]   # image | path | shard (a tar member) | file (an hf row)
        self.items = table.column(self.column).to_pylist()
        self.where = [table.column(c).to_pylist() for c in columns[1:]]
        self.ids = table.column("id").to_pylist() if "id" in table.column_names else range(len(self.items))
        self.rows = located.RowFiles() if self.column == "file" else None

    def __len__(self) -> int:
        return len(self.items)

    def encoded(self, i: int) -> bytes:
        """The image's file bytes, wherever the split keeps them."""
        item = self.items[i]
        if self.column == "image":
            return item
        if self.column == "path":
            return (self.root / item).read_bytes()
        if self.column == "shard":
            return located.member_bytes(self.root / item, self.where[1][i], self.where[2][i])
        return self.rows.encoded(self.root / item, self.where[0][i], self.where[1][i])

    def describe(self, i: int) -> str:
        if self.column == "image":
            return f"image id {self.ids[i]}"
        if self.column == "path":
            return str(self.root / self.items[i])
        return f"{self.root / self.items[i]} {'member' if self.column == 'shard' else 'row'} {self.where[0][i]}"

    def open(self, i: int) -> Image.Image:
        try:
            if self.column == "file":
                return to_rgb(self.rows.image(self.root / self.items[i], self.where[0][i], self.where[1][i]))
            src = self.root / self.items[i] if self.column == "path" else io.BytesIO(self.encoded(i))
            with Image.open(src) as im:
                return to_rgb(im)
        except ClipprobeError:
            raise
        except Exception as e:
            fix = ("rerun prepare, or set data.skip_corrupt: true" if self.column in ("image", "path") else
                   "replace or remove that sample in the source (prepare indexes it without decoding images)")
            raise ClipprobeError(f"{self.describe(i)}: cannot decode image ({e}); {fix}") from None

    def __getitem__(self, i: int):
        return self.transform(self.open(i)), i
