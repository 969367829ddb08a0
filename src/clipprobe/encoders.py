"""Frozen CLIP encoders from open_clip: name and weights resolution, loading, placement; the
image tower for extraction, the text tower for zero-shot.

`model.name` takes OpenAI's spelling (`ViT-B/32`, `ViT-L/14@336px`) or open_clip's
(`ViT-B-32`), or a path to an open_clip model-config JSON.  `model.weights` is an
open_clip pretrained tag, a checkpoint path (OpenAI's TorchScript `.pt` or a state
dict), or `random`: the untrained baseline, seeded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

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


def is_torchscript(path: Path) -> bool:
    """OpenAI's `.pt` files are TorchScript zip archives with a code/ folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_checkpoint(path: Path) -> dict:
    if is_torchscript(path):  # loaded only because the user named this OpenAI .pt file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
            try:
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            except Exception as e:  # torch raises RuntimeError and others for a broken archive
                raise ClipprobeError(f"model.weights={path}: a zip with code/ like OpenAI's TorchScript .pt, but "
                                     f"torch.jit.load cannot read it ({_first_line(e)}); download the file again, "
                                     "or give a torch state dict") from None
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ClipprobeError(f"model.weights={path}: not a readable checkpoint ({_first_line(e)}); "
                                 "give an OpenAI .pt file or a torch state dict") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ClipprobeError(f"model.weights={path}: holds no state dict of tensors")
    if next(iter(state)).startswith("module."):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _first_line(e: Exception) -> str:
    """The gist of an exception from torch or open_clip, for a one-line error (torch appends
    boilerplate after two spaces)."""
    return f"{type(e).__name__}: {re.split(r'  +', (str(e).splitlines() or [''])[0])[0][:120]}"


def _mismatch(expected: dict, state: dict, arch: str) -> str:
    """What keeps `state` from loading into a model whose state dict is `expected` ('' if nothing)."""
    for key, tensor in expected.items():
        if key in state and state[key].shape != tensor.shape:
            return (f"size mismatch for {key}: {list(state[key].shape)} in the checkpoint, "
                    f"{list(tensor.shape)} in {arch}")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        return (f"{len(missing)} key(s) of {arch} missing from the checkpoint (e.g. {(missing or ['-'])[0]}), "
                f"{len(unexpected)} unexpected (e.g. {(unexpected or ['-'])[0]})")
    return ""


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


@dataclass
class Encoder:
    """The frozen image tower, its preprocess, and what identifies its weights."""
    visual: torch.nn.Module
    preprocess: object
    arch: str
    weights_id: str
    embed_dim: int


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
        openai_origin = openai_origin or is_torchscript(path)
        state = _read_checkpoint(path)
        weights_id = f"sha256:{file_sha256(path)}"
    else:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ClipprobeError(f"model.weights={weights}: not a pretrained tag of {arch} "
                             f"(tags: {', '.join(tags) or 'none'}), not a file, and not random")

    with _quiet(state is not None):  # open_clip would report "initialized randomly" before we load
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, force_quick_gelu=bool(openai_origin), **kwargs)
        except Exception as e:
            if not name.endswith(".json"):
                raise
            # a config with every top-level key can still hold values open_clip cannot build
            raise ClipprobeError(f"model.name={name}: open_clip cannot build a model from this config "
                                 f"({_first_line(e)}); start from a config in open_clip's model_configs/ "
                                 "folder") from None
    if state is not None:
        problem = _mismatch(model.state_dict(), state, arch)
        if problem:
            raise ClipprobeError(f"model.weights={weights} does not fit model.name={name}: {problem}; "
                                 "set model.name to the architecture the checkpoint was trained as")
        model.load_state_dict(state, strict=True)
    return model, preprocess, arch, weights_id


def load_encoder(name: str, weights: str, layer: str = "projection") -> Encoder:
    """Build the frozen image encoder on CPU, in fp32, in eval mode."""
    model, preprocess, arch, weights_id = _load_model(name, weights)
    proj = getattr(model.visual, "proj", None)
    dim = proj.shape[0] if layer == "pre_projection" and proj is not None else model.visual.output_dim
    visual = _image_tower(model, layer)
    return Encoder(visual=visual, preprocess=preprocess, arch=arch, weights_id=weights_id, embed_dim=int(dim))


@dataclass
class TextEncoder:
    """The frozen model for its text tower (`model.encode_text`), its tokenizer, what identifies
    its weights, and the image tower's output projection (None where it has no separate one),
    which maps pre-projection image features into the space the text embeds in."""
    model: torch.nn.Module
    tokenizer: object
    arch: str
    weights_id: str
    image_proj: torch.Tensor | None


def load_text_encoder(name: str, weights: str) -> TextEncoder:
    """The same model and weights as `load_encoder`, for zero-shot: on CPU, fp32, eval mode."""
    import open_clip

    model, _, arch, weights_id = _load_model(name, weights)
    proj = getattr(model.visual, "proj", None)
    image_proj = proj.detach().clone() if isinstance(proj, torch.nn.Parameter) else None
    return TextEncoder(model=model.eval().requires_grad_(False), tokenizer=open_clip.get_tokenizer(arch),
                       arch=arch, weights_id=weights_id, image_proj=image_proj)


def place(encoder: Encoder, device: torch.device, dtype: torch.dtype) -> Encoder:
    """Move the image tower to `device` with its weights in `dtype`.

    Casting the weights, not autocast: on CPU, autocast takes nn.MultiheadAttention off its
    fused inference path and copies weights on every call, which made bf16 slower than fp32.
    """
    encoder.visual.to(device=device, dtype=dtype)
    return encoder
