"""Sources `prepare` indexes instead of copying (`wds:` shards, `hf:` datasets): names and files.

Light on purpose (os, json, and braceexpand, the library WebDataset expands shard patterns with):
the `inputs` stage lists and hashes the files behind `data.name` on every `dvc repro`, and `prepare`
reads exactly these files, so a changed shard reruns what depends on it.

- `wds:<pattern>`: `{split}` stands for the source's split name (`data.splits.*`), braces expand as
  WebDataset expands them (`{0..9}`, `{a,b}`); the dataset's folder is the pattern's leading
  directory, and `classnames.txt` / `zeroshot_classification_templates.txt` (CLIP_benchmark's
  layout) sit beside the shards or in a folder above them, up to that one.
- `hf:<path>`: a dataset saved with `save_to_disk` or a folder of Parquet files (its files are
  listed); `hf:<repo id>` otherwise (identified by its name, as a named dataset).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import braceexpand

from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams

WDS, HF = "wds:", "hf:"
SPLIT = "{split}"
CLASSNAMES = "classnames.txt"
TEMPLATES = "zeroshot_classification_templates.txt"
NSHARDS = "nshards.txt"


def kind(name: str) -> str | None:
    """`wds`, `hf`, or None for a registry dataset or an ImageFolder."""
    return next((k[:-1] for k in (WDS, HF) if name.startswith(k)), None)


def split_names(p: DataParams) -> dict[str, str]:
    """The paper's splits (train, val, test) -> the source's names; val only where one is set.  One
    source split in two roles stops here: the probe would train on (or tune with) its test images."""
    names = {s: n for s, n in (("train", p.splits.train), ("val", p.splits.val), ("test", p.splits.test)) if n}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if a in names and names.get(b) == names[a]:
            fix = "name another split" + (", or leave data.splits.val empty" if "val" in (a, b) else "")
            raise ClipprobeError(f"data.splits.{b}={names[b]}: data.splits.{a} names the same split; each split has "
                                 f"one role ({a} images would {'be tested on' if b == 'test' else 'tune C'}): {fix}")
    return names


def wds_pattern(name: str) -> str:
    pattern = name[len(WDS):]
    if SPLIT not in pattern:
        raise ClipprobeError(f"data.name={name}: the shard pattern needs {SPLIT} where the split's name goes, "
                             f"e.g. wds:/data/cifar10/{SPLIT}/{{0..9}}.tar")
    return pattern


def wds_root(pattern: str) -> Path:
    """The dataset's folder: the pattern's directories before the first brace."""
    return Path(os.path.dirname(pattern[:pattern.index("{")]) or ".")


def wds_shards(name: str, p: DataParams) -> dict[str, list[Path]]:
    """Each split's shards, in the order the pattern expands to.  A split may have fewer shards than
    the braces name (CLIP_benchmark's test splits have fewer than train): its shards are the names
    that exist, which must come first, with no gap, and where `nshards.txt` sits beside them (as
    CLIP_benchmark writes it), as many as it says.  A pattern that matches no file for train or
    test stops here; val is optional."""
    pattern = wds_pattern(name)
    shards = {}
    for split, source in split_names(p).items():
        expanded = [Path(s) for s in braceexpand.braceexpand(pattern.replace(SPLIT, source))]
        present = [s.is_file() for s in expanded]
        n = present.index(False) if False in present else len(present)
        if not n and split == "val" and not any(present):
            continue
        if not n and not any(present):
            raise ClipprobeError(f"data.name={name}: no file matches the pattern for split {split} "
                                 f"({_sample(expanded)}); check the path, or set data.splits.{split} to "
                                 "the split's name in it")
        if any(present[n:]):
            later = expanded[n + present[n:].index(True)]
            raise ClipprobeError(f"data.name={name}: shard {expanded[n]} of split {split} is missing, but later "
                                 f"ones exist ({later}); restore it or narrow the braces")
        count = expanded[0].parent / NSHARDS
        if n < len(expanded) and count.is_file() and count.read_text().strip().isdigit() \
                and int(count.read_text()) != n:
            raise ClipprobeError(f"data.name={name}: {count} says {int(count.read_text())} shards, but "
                                 f"{n} of the pattern's names exist for split {split}; restore the missing ones or "
                                 "fix the braces")
        shards[split] = expanded[:n]
    return shards


def _sample(paths: list[Path]) -> str:
    return ", ".join(map(str, paths[:2])) + (f" ... {len(paths)} names" if len(paths) > 2 else "")


def beside(shard: Path, root: Path, filename: str) -> Path | None:
    """`filename` in the shard's folder or in a folder above it, up to the dataset's folder."""
    d, top = shard.parent, os.path.abspath(root)
    while True:
        if (d / filename).is_file():
            return d / filename
        if os.path.abspath(d) == top or d == d.parent:
            return None
        d = d.parent


REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def hf_dir(name: str) -> Path | None:
    """The local folder `hf:` names, or None for a repo id (`name` or `owner/name`, not on disk)."""
    path = Path(name[len(HF):])
    if path.exists():
        return path
    if REPO_ID.fullmatch(name[len(HF):]) and not name[len(HF):].endswith((".parquet", ".arrow")):
        return None
    raise ClipprobeError(f"data.name={name}: {path} does not exist, and it is not a Hugging Face repo id "
                         "(name or owner/name); give the folder of a dataset saved with save_to_disk or of its "
                         "Parquet files")


def hf_files(root: Path) -> list[Path]:
    """Every file of a local Hugging Face dataset (data, metadata, cards), hidden ones aside, in path order."""
    if not root.is_dir():
        raise ClipprobeError(f"data.name=hf:{root}: not a folder; give a dataset saved with save_to_disk, a folder "
                             "of Parquet files, or a Hugging Face repo id")
    found = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        found += [Path(d) / f for f in sorted(files) if not f.startswith(".")]
    return found


def files(p: DataParams) -> tuple[Path, list[Path]]:
    """(the dataset's folder, the files `prepare` reads) for a `wds:` or `hf:` source; a repo id has none here."""
    if kind(p.name) == "wds":
        pattern = wds_pattern(p.name)
        root, shards = wds_root(pattern), wds_shards(p.name, p)
        listed = [s for split in shards.values() for s in split]
        return root, listed + [f for f in (beside(shards["train"][0], root, n) for n in (CLASSNAMES, TEMPLATES)) if f]
    root = hf_dir(p.name)
    return (root, hf_files(root)) if root is not None else (Path("."), [])
