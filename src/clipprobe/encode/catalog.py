"""The names and pretrained tags a model library offers, cached per library version.

open_clip and timm list their models only once imported, and importing either imports torch (3-5 s),
which the `inputs` stage must not: it runs on every `dvc repro` and checks `model.name` and
`model.weights` in seconds, before `prepare` downloads anything.  So each library's catalog (its model
names, and per model its pretrained tags with where their weights come from) is read once per installed
version, in a child process (or in this one where the library is imported already), and kept in the
user's cache directory, shared by every experiment of the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import platformdirs

from clipprobe import atomic
from clipprobe.errors import ClipprobeError

DISTRIBUTIONS = {"open_clip": "open_clip_torch", "timm": "timm"}


def _open_clip() -> dict:
    import open_clip

    pretrained = {}
    for arch, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        pretrained.setdefault(arch, {})[tag] = {"hf_hub": cfg.get("hf_hub") or "", "url": cfg.get("url") or ""}
    return {"models": sorted(open_clip.list_models()), "pretrained": pretrained}


def _timm() -> dict:
    import timm
    from timm.models import get_pretrained_cfg

    pretrained = {}
    for full in timm.list_pretrained():
        arch, _, tag = full.partition(".")
        cfg = get_pretrained_cfg(full)
        entry = pretrained.setdefault(arch, {"default": get_pretrained_cfg(arch).tag, "tags": {}})
        entry["tags"][tag] = {"hf_hub": cfg.hf_hub_id or "", "filename": cfg.hf_hub_filename or "",
                              "url": cfg.url or ""}
    return {"models": sorted(timm.list_models()), "pretrained": pretrained}


_BUILDERS = {"open_clip": _open_clip, "timm": _timm}


def _print(library: str) -> None:
    """The child process's side: the catalog as JSON on stdout."""
    json.dump(_BUILDERS[library](), sys.stdout)


def path(library: str, version: str) -> Path:
    return platformdirs.user_cache_path("clipprobe") / "catalogs" / f"{library}-{version}.json"


def get(library: str) -> dict:
    """The catalog of `library` (`open_clip` or `timm`) as installed: from the cache, else built."""
    try:
        version = metadata.version(DISTRIBUTIONS[library])
    except metadata.PackageNotFoundError:
        raise ClipprobeError(f"{library} is not installed; pip install {DISTRIBUTIONS[library]}") from None
    cached = path(library, version)
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    if library in sys.modules:   # imported already (a loader): no child process needed
        found = _BUILDERS[library]()
    else:
        src = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {src!r}); from clipprobe.encode import catalog; catalog._print({library!r})"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise ClipprobeError(f"cannot list {library}'s models ({last}); check that `import {library}` works")
        found = json.loads(r.stdout)
    try:
        atomic.write_json(cached, found)
    except ClipprobeError:   # a read-only cache: the catalog is read again next time, nothing else changes
        pass
    return found
