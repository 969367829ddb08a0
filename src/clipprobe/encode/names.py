"""What `model.name` and `model.weights` name, checked in seconds and without torch.

`model.name` picks the source by its prefix: `timm:<name>` (a timm model), `hf:<repo id or directory>`
(a transformers vision model), anything else open_clip (OpenAI's spelling `ViT-B/32`, open_clip's
`ViT-B-32`, or a model-config JSON).  `check` resolves the pair, or stops with one line naming the
param, the value and the fix: an unknown name (with the closest names), a tag the model does not have,
a missing file, pretrained weights that are neither cached nor downloadable.  The `inputs` stage runs it
first, before `prepare`; each loader runs it again before building anything.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from clipprobe.encode import catalog
from clipprobe.errors import ClipprobeError

RANDOM = "random"
PRETRAINED = "pretrained"   # open_clip: its first tag (OpenAI's where it has them); timm: its default tag; hf: its own
CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")   # what open_clip requires of a config, else ignores it
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
HF_FILES = ("config.json", "preprocessor_config.json")
_HOSTS = ("huggingface.co", "openaipublic.azureedge.net")


@dataclass(frozen=True)
class Named:
    """A checked `model.name` / `model.weights` pair."""
    source: str             # open_clip | timm | hf
    arch: str               # the library's name: open_clip architecture, timm model, hf repo id or directory
    kind: str               # random | tag | file | hub (hf weights from the hub) | dir (hf weights in a directory)
    tag: str = ""           # the pretrained tag (open_clip, timm)
    path: Path | None = None    # the checkpoint file
    config: Path | None = None  # open_clip's model-config JSON
    cache: str = ""         # where hub weights are cached
    cached: bool = False    # whether they are there (else they download)


def split(name: str) -> tuple[str, str]:
    """(source, the name without its prefix)."""
    for source in ("timm", "hf"):
        if name.startswith(f"{source}:"):
            return source, name[len(source) + 1:]
    return "open_clip", name


def check(name: str, weights: str) -> Named:
    source, rest = split(name)
    if not rest:
        raise ClipprobeError(f"model.name={name}: give a model after the prefix, e.g. timm:convnext_base or "
                             "hf:facebook/dinov2-base")
    return {"open_clip": _open_clip, "timm": _timm, "hf": _hf}[source](name, rest, weights)


# ---------------------------------------------------------------- open_clip

def _open_clip(name: str, arch: str, weights: str) -> Named:
    config = None
    if name.endswith(".json"):
        config = Path(name)
        if not config.is_file():
            raise ClipprobeError(f"model.name={name}: config file not found")
        check_model_config(config)
        arch = config.stem
    else:
        arch = re.sub(r"@(\d+)px$", r"-\1", name).replace("/", "-")
        known = catalog.get("open_clip")["models"]
        if arch not in known:
            close = difflib.get_close_matches(arch, known, n=8) or \
                [m for m in known if m.lower().startswith(arch.split("-")[0].lower())][:8] or known[:8]
            raise ClipprobeError(f"model.name={name}: unknown architecture; try one of {', '.join(close)} "
                                 f"(open_clip.list_models() has all){_other_source_hint(name)}")
    tags = catalog.get("open_clip")["pretrained"].get(arch, {})
    if weights == RANDOM:
        return Named("open_clip", arch, RANDOM, config=config)
    if weights == PRETRAINED or weights in tags:
        tag = next(iter(tags), "") if weights == PRETRAINED else weights   # open_clip lists OpenAI's first
        if not tag:
            raise ClipprobeError(f"model.weights={weights}: open_clip has no pretrained weights for {arch}; use "
                                 "random, or a checkpoint path")
        entry = tags[tag]
        if entry["hf_hub"]:
            repo, filename = os.path.split(entry["hf_hub"])
            where = hub_cached(repo, _weight_files(filename, "open_clip_pytorch_model.bin"))
        else:
            where = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(entry["url"])
            where = (str(where), where.is_file())
        _require_reachable(where, f"model.weights={weights}: {arch} weights ({tag}) are")
        return Named("open_clip", arch, "tag", tag=tag, config=config, cache=where[0], cached=where[1])
    path = _checkpoint(weights, f"a pretrained tag of {arch} (tags: {', '.join([PRETRAINED, *tags]) if tags else 'none'})")
    return Named("open_clip", arch, "file", path=path, config=config)


def check_model_config(path: Path) -> None:
    """An open_clip model config: valid JSON with the keys open_clip requires."""
    fix = "start from a config in open_clip's model_configs/ folder"
    try:
        cfg = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClipprobeError(f"model.name={path}: not valid JSON ({e}); {fix}") from None
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ClipprobeError(f"model.name={path}: an open_clip model config needs {', '.join(CONFIG_KEYS)}, "
                             f"this one lacks {', '.join(missing)}; {fix}")


def _other_source_hint(name: str) -> str:
    if re.fullmatch(r"[a-z0-9_]+", name) and name in catalog.get("timm")["models"]:
        return f"; for timm's model write model.name=timm:{name}"
    return "; timm models are timm:<name>, Hugging Face models hf:<repo id or directory>"


# ---------------------------------------------------------------- timm

def _timm(name: str, arch: str, weights: str) -> Named:
    cat = catalog.get("timm")
    known = set(cat["models"])
    if arch not in known:
        base, _, tag = arch.partition(".")
        if tag and base in known:
            raise ClipprobeError(f"model.name={name}: the pretrained tag goes in model.weights: "
                                 f"model.name=timm:{base}, model.weights={tag}")
        close = difflib.get_close_matches(arch, cat["models"], n=6, cutoff=0.6)
        raise ClipprobeError(f"model.name={name}: not a timm model; closest: {', '.join(close) or 'none'} "
                             "(timm.list_models() has all)")
    pretrained = cat["pretrained"].get(arch, {"default": "", "tags": {}})
    tags = pretrained["tags"]
    if weights == RANDOM:
        return Named("timm", arch, RANDOM)
    if weights == PRETRAINED or weights in tags:
        tag = pretrained["default"] if weights == PRETRAINED else weights
        if not tag:
            raise ClipprobeError(f"model.weights={weights}: timm has no pretrained weights for {arch}; use "
                                 "random, or a checkpoint path")
        entry = tags[tag]
        if entry["hf_hub"]:
            where = hub_cached(entry["hf_hub"], _weight_files(entry["filename"], "pytorch_model.bin"))
        else:
            torch_home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
            file = Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints" / os.path.basename(entry["url"])
            where = (str(file), file.is_file())
        _require_reachable(where, f"model.weights={weights}: timm's {arch}.{tag} weights are")
        return Named("timm", arch, "tag", tag=tag, cache=where[0], cached=where[1])
    listed = ", ".join([PRETRAINED, *tags]) if tags else "none"
    return Named("timm", arch, "file", path=_checkpoint(weights, f"a pretrained tag of {arch} (tags: {listed})"))


# ---------------------------------------------------------------- Hugging Face

def _hf(name: str, repo: str, weights: str) -> Named:
    if importlib.util.find_spec("transformers") is None:
        raise ClipprobeError(f"model.name={name}: Hugging Face models need transformers; "
                             "pip install 'clipprobe[hf]'")
    if weights not in (PRETRAINED, RANDOM):
        raise ClipprobeError(f"model.weights={weights}: a Hugging Face model takes pretrained (its own "
                             "weights) or random (initialised from its config)")
    local = Path(repo).expanduser()
    if local.is_dir():
        missing = [f for f in HF_FILES if not (local / f).is_file()]
        if weights == PRETRAINED and not any((local / f).is_file() for f in HF_WEIGHTS):
            missing.append(" or ".join(HF_WEIGHTS[::2]))
        if missing:
            raise ClipprobeError(f"model.name={name}: the directory lacks {', '.join(missing)}; save the model "
                                 "and its image processor there with save_pretrained"
                                 + (", or set model.weights=random" if weights == PRETRAINED else ""))
        return Named("hf", str(local), RANDOM if weights == RANDOM else "dir", cached=True)
    if repo.startswith(("/", ".", "~")) or local.exists() or repo.count("/") > 1:
        raise ClipprobeError(f"model.name={name}: no such directory (a Hugging Face repo id is "
                             "<organisation>/<name>)")
    groups = [[f] for f in HF_FILES] + ([list(HF_WEIGHTS)] if weights == PRETRAINED else [])
    found = [hub_cached(repo, group) for group in groups]   # each file, and one of the weights files
    where = (found[0][0], all(hit for _, hit in found))
    _require_reachable(where, f"model.name={name}: the repo's files are",
                       fix="run once with internet to cache them, or save the model with save_pretrained and "
                           "give its directory (hf:/path/to/dir)")
    if not where[1]:
        _require_hub_repo(repo, name)
    return Named("hf", repo, RANDOM if weights == RANDOM else "hub", cache=where[0], cached=where[1])


def _require_hub_repo(repo: str, name: str) -> None:
    """Online: a repo id that the hub does not know stops here, not after `prepare`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo, timeout=10)
    except (RepositoryNotFoundError, HFValidationError):
        raise ClipprobeError(f"model.name={name}: no such model on the Hugging Face hub (or it is private: "
                             "log in with `hf auth login`)") from None
    except Exception:   # the hub is slow or down: the download in extract reports it
        pass


# ---------------------------------------------------------------- shared

def _checkpoint(weights: str, tags: str) -> Path:
    path = Path(weights)
    if path.suffix or os.sep in weights or path.exists():
        if not path.is_file():
            raise ClipprobeError(f"model.weights={weights}: file not found; give an existing checkpoint path, "
                                 f"{tags}, or random")
        return path
    raise ClipprobeError(f"model.weights={weights}: not {tags}, not a file, and not random")


_SAFETENSORS = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}


def _weight_files(filename: str, default: str) -> list[str]:
    """The weights file a hub entry names (or the library's default), with the safetensors copy
    that open_clip and timm load instead where the repo has one."""
    filename = filename or default
    safe = _SAFETENSORS.get(filename) or (filename[:-4] + ".safetensors" if filename.endswith((".bin", ".pth")) else "")
    return [f for f in (safe, filename) if f]


def hub_cached(repo: str, files: list[str]) -> tuple[str, bool]:
    """(the repo's folder in the Hugging Face cache, whether one of `files` is cached there)."""
    from huggingface_hub import constants, try_to_load_from_cache

    hit = any(isinstance(try_to_load_from_cache(repo, f), str) for f in files)
    return os.path.join(constants.HF_HUB_CACHE, f"models--{repo.replace('/', '--')}"), hit


def hub_revision(cache: str) -> str | None:
    """The commit of a cached hub repo that loads by default (its refs/main), if cached."""
    ref = Path(cache) / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None


def online(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    for host in _HOSTS:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


_FIX = ("run once with internet to cache them, or set model.weights to a downloaded checkpoint path, or "
        "model.weights=random for the untrained baseline")


def _require_reachable(where: tuple[str, bool], what: str, fix: str = _FIX) -> None:
    """`what` ("... are"): stop unless cached or the hub is reachable."""
    cache, cached = where
    if not cached and not online():
        raise ClipprobeError(f"{what} not cached ({cache}) and there is no network; {fix}")
