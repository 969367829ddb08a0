"""The same images as an ImageFolder, as the sources `prepare` indexes: WebDataset shards in
CLIP_benchmark's layout, and a Hugging Face DatasetDict saved to disk and as Parquet files.

Every sample keeps the ImageFolder's file bytes and its order (prepare's order of the folder: by
class, then file), so the features of each source must equal the folder's row for row."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from clipprobe.data import imagefolder

TEMPLATES = ("a photo of a {c}.", "a blurry photo of a {c}.")


def folder_samples(folder: Path) -> tuple[dict[str, list[tuple[Path, int]]], list[str]]:
    splits, classes = imagefolder.load(folder)
    return {s: [(folder / p, int(y)) for p, y in zip(sp.paths, sp.labels)] for s, sp in splits.items()}, classes


def write_wds(folder: Path, dest: Path, shards: dict[str, int] | None = None, templates=TEMPLATES) -> str:
    """`dest/<split>/<i>.tar` written by webdataset's TarWriter (`png` + `cls` per sample) with
    nshards.txt, classnames.txt and zeroshot_classification_templates.txt beside the split folders
    (CLIP_benchmark's layout); returns the `data.name` of the set (braces up to the largest split's shards)."""
    import webdataset as wds

    shards = shards or {"train": 2, "test": 1}
    samples, classes = folder_samples(folder)
    for split, n in shards.items():
        (dest / split).mkdir(parents=True, exist_ok=True)
        (dest / split / "nshards.txt").write_text(f"{n}\n")
        items = samples[split]
        per = -(-len(items) // n)
        for i in range(n):
            with wds.TarWriter(str(dest / split / f"{i}.tar")) as w:
                for k, (path, label) in enumerate(items[i * per:(i + 1) * per], start=i * per):
                    w.write({"__key__": f"{split}{k:05d}", "png": path.read_bytes(), "cls": label})
    (dest / "classnames.txt").write_text("".join(f"{c}\n" for c in classes))
    if templates:
        (dest / "zeroshot_classification_templates.txt").write_text("".join(f"{t}\n" for t in templates))
    return f"wds:{dest}/{{split}}/{{0..{max(shards.values()) - 1}}}.tar"


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A plain tar holding `members` (name, bytes) in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hf_dataset_dict(folder: Path, split_names=("train", "test")):
    """The folder's images as a datasets.DatasetDict: an Image column of the files' bytes and a ClassLabel."""
    import datasets

    samples, classes = folder_samples(folder)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=classes),
                                  "caption": datasets.Value("string")})
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict({"image": [{"bytes": p.read_bytes(), "path": None} for p, _ in samples[s]],
                                          "label": [y for _, y in samples[s]],
                                          "caption": [p.name for p, _ in samples[s]]}, features=features)
        for s, name in zip(("train", "test"), split_names)})


def write_hf(folder: Path, dest: Path) -> tuple[str, str]:
    """The folder as a DatasetDict saved with save_to_disk (dest/saved) and as Parquet files in the
    Hub's layout (dest/parquet/data/<split>-00000-of-00001.parquet); returns both `data.name`s."""
    dd = hf_dataset_dict(folder)
    dd.save_to_disk(str(dest / "saved"))
    (dest / "parquet" / "data").mkdir(parents=True)
    for split, d in dd.items():
        d.to_parquet(str(dest / "parquet" / "data" / f"{split}-00000-of-00001.parquet"))
    return f"hf:{dest / 'saved'}", f"hf:{dest / 'parquet'}"
