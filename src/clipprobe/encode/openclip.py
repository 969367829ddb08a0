"""open_clip models (CLIP and its later variants) as a model source.

Names in OpenAI's spelling (`ViT-B/32`, `ViT-L/14@336px`),
open_clip's (`ViT-B-32`) or a model-config JSON; weights an open_clip pretrained tag, a checkpoint
(OpenAI's TorchScript `.pt` or a state dict), or `random` (the untrained baseline, seeded).
Probed on `encode_image` (`extract.layer: projection`) or the pooled features before the
projection (`pre_projection`, what the CLIP paper probed)."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import torch

from clipprobe.digest import file_sha256
from clipprobe.encode import checkpoint
from clipprobe.encode.towers import Encoder, TextEncoder
from clipprobe.errors import ClipprobeError

RANDOM_SEED = 0
_TORCHSCRIPT_HOSTS = ("huggingface.co", "openaipublic.azureedge.net")


def resolve_name(name: str) -> str:
    """The open_clip architecture name for an OpenAI or open_clip spelling (or a config JSON)."""
    import open_clip

    if name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise ClipprobeError(f"model.name={name}: config file not found")
        _check_model_config(path)
        open_clip.add_model_config(path)
        return path.stem
    arch = re.sub(r"@(\d+)px$", r"-\1", name).replace("/", "-")
    known = open_clip.list_models()
    if arch not in known:
        close = [m for m in known if m.lower().startswith(arch.split("-")[0].lower())][:8]
        raise ClipprobeError(f"model.name={name}: unknown architecture; try one of "
                             f"{', '.join(close or known[:8])} (open_clip.list_models() has all)")
    return arch


CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")  # what open_clip requires, else it ignores the file


def _check_model_config(path: Path) -> None:
    fix = "start from a config in open_clip's model_configs/ folder"
    try:
        cfg = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClipprobeError(f"model.name={path}: not valid JSON ({e}); {fix}") from None
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ClipprobeError(f"model.name={path}: an open_clip model config needs {', '.join(CONFIG_KEYS)}, "
                             f"this one lacks {', '.join(missing)}; {fix}")


def _is_openai_spelling(name: str) -> bool:
    return "/" in name or "@" in name


def _pretrained_cache(arch: str, tag: str) -> tuple[bool, str]:
    """Whether open_clip would load (arch, tag) without network, and where it looks."""
    import open_clip
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        hit = any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
        return hit, os.path.join(constants.HF_HUB_CACHE, f"models--{repo.replace('/', '--')}")
    target = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(cfg.get("url", "")))
    return os.path.isfile(target), target


def _online(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    for host in _TORCHSCRIPT_HOSTS:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


@contextmanager
def _quiet(enabled: bool):
    root = logging.getLogger()
    level = root.level
    if enabled:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _image_tower(model, layer: str) -> torch.nn.Module:
    visual = model.visual
    if layer == "pre_projection":
        if getattr(visual, "proj", None) is None or not isinstance(visual.proj, torch.nn.Parameter):
            raise ClipprobeError(f"extract.layer=pre_projection: {type(visual).__name__} has no separate "
                                 "output projection; use extract.layer: projection")
        visual.proj = None  # open_clip's ViT then returns the pooled, pre-projection features
    return visual.eval().requires_grad_(False)


def _load_model(name: str, weights: str):
    """The whole open_clip model on CPU in fp32, its preprocess, architecture and weights id."""
    import open_clip

    arch = resolve_name(name)
    openai_origin = _is_openai_spelling(name)
    kwargs = {}
    path = Path(weights)
    if weights == "random":
        torch.manual_seed(RANDOM_SEED)
        weights_id, state = f"random(seed={RANDOM_SEED})", None
    elif weights in open_clip.list_pretrained_tags_by_model(arch):
        cached, where = _pretrained_cache(arch, weights)
        if not cached and not _online():
            raise ClipprobeError(
                f"model.weights={weights}: {arch} weights are not cached ({where}) and there is no network; "
                f"run once with internet to cache them, or set model.weights to a downloaded checkpoint "
                f"path, or model.weights=random for the untrained baseline")
        kwargs["pretrained"] = weights
        openai_origin = open_clip.get_pretrained_cfg(arch, weights).get("quick_gelu", False)
        weights_id, state = f"{arch}/{weights}", None
    elif path.suffix or os.sep in weights or path.exists():
        if not path.is_file():
            raise ClipprobeError(f"model.weights={weights}: file not found; give an existing checkpoint path, "
                                 "an open_clip tag, or random")
        openai_origin = openai_origin or checkpoint.is_torchscript(path)
        state = checkpoint.read(path)
        weights_id = f"sha256:{file_sha256(path)}"
    else:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ClipprobeError(f"model.weights={weights}: not a pretrained tag of {arch} "
                             f"(tags: {', '.join(tags) or 'none'}), not a file, and not random")

    with _quiet(state is not None or weights == "random"):  # open_clip reports "initialized randomly": we know
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, force_quick_gelu=bool(openai_origin), **kwargs)
        except Exception as e:
            if not name.endswith(".json"):
                raise
            # a config with every top-level key can still hold values open_clip cannot build
            raise ClipprobeError(f"model.name={name}: open_clip cannot build a model from this config "
                                 f"({checkpoint.first_line(e)}); start from a config in open_clip's model_configs/ "
                                 "folder") from None
    if state is not None:
        problem = checkpoint.mismatch(model.state_dict(), state, arch)
        if problem:
            raise ClipprobeError(f"model.weights={weights} does not fit model.name={name}: {problem}; "
                                 "set model.name to the architecture the checkpoint was trained as")
        model.load_state_dict(state, strict=True)
    return model, preprocess, arch, weights_id


def load_image(name: str, weights: str, layer: str = "projection") -> Encoder:
    """Build the frozen image encoder on CPU, in fp32, in eval mode."""
    model, preprocess, arch, weights_id = _load_model(name, weights)
    proj = getattr(model.visual, "proj", None)
    dim = proj.shape[0] if layer == "pre_projection" and proj is not None else model.visual.output_dim
    visual = _image_tower(model, layer)
    return Encoder(visual=visual, preprocess=preprocess, arch=arch, weights_id=weights_id, embed_dim=int(dim))


def load_text(name: str, weights: str) -> TextEncoder:
    """The same model and weights as `load_image`, for zero-shot: on CPU, fp32, eval mode."""
    import open_clip

    model, _, arch, weights_id = _load_model(name, weights)
    proj = getattr(model.visual, "proj", None)
    image_proj = proj.detach().clone() if isinstance(proj, torch.nn.Parameter) else None
    return TextEncoder(model=model.eval().requires_grad_(False), tokenizer=open_clip.get_tokenizer(arch),
                       arch=arch, weights_id=weights_id, image_proj=image_proj)
