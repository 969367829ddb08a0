"""open_clip models (CLIP and its later variants) as a model source.

Names in OpenAI's spelling (`ViT-B/32`, `ViT-L/14@336px`),
open_clip's (`ViT-B-32`) or a model-config JSON; weights an open_clip pretrained tag (`pretrained`:
the model's first, OpenAI's where it has them), a checkpoint
(OpenAI's TorchScript `.pt` or a state dict), or `random` (the untrained baseline, seeded).
Probed on `encode_image` (`extract.layer: projection`, what `auto` gives), the pooled features
before the projection (`pre_projection`, what the CLIP paper probed), or a ViT's class token and mean
patch token after its final norm, concatenated (`cls_avgpatch`, as for timm and Hugging Face models)."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch

from clipprobe.digest import file_sha256
from clipprobe.encode import checkpoint, names, sizing
from clipprobe.encode.towers import Encoder, TextEncoder
from clipprobe.errors import ClipprobeError

RANDOM_SEED = 0
LAYERS = {"auto": "projection", "projection": "projection", "pre_projection": "pre_projection",
          "cls_avgpatch": "cls_avgpatch"}


def resolve_name(name: str) -> str:
    """The open_clip architecture name for an OpenAI or open_clip spelling (or a config JSON,
    which is registered with open_clip)."""
    return _register(names.check(name, names.RANDOM))


def _register(named: names.Named) -> str:
    import open_clip

    if named.config is not None:
        open_clip.add_model_config(named.config)
    return named.arch


def _is_openai_spelling(name: str) -> bool:
    return "/" in name or "@" in name


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


class ClsAvgPatch(torch.nn.Module):
    """A ViT's class token and mean patch token after its final norm, concatenated: the class-token
    half is `pre_projection`'s feature, so zero-shot still projects it."""

    def __init__(self, visual: torch.nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, patches = self.visual(x)
        return torch.cat([cls, patches.mean(dim=1)], dim=-1)


def _has_separate_proj(visual) -> bool:
    return isinstance(getattr(visual, "proj", None), torch.nn.Parameter)


def _image_tower(model, layer: str) -> torch.nn.Module:
    visual = model.visual
    if layer == "cls_avgpatch" and (getattr(visual, "pool_type", None) != "tok" or visual.attn_pool is not None
                                    or visual.final_ln_after_pool):
        raise ClipprobeError(f"extract.layer=cls_avgpatch: this {type(visual).__name__} image tower does not pool "
                             "by a class token after its final norm (OpenAI-style ViTs do); use extract.layer: "
                             "projection")
    if layer in ("pre_projection", "cls_avgpatch") and not _has_separate_proj(visual):
        raise ClipprobeError(f"extract.layer={layer}: {type(visual).__name__} has no separate "
                             "output projection; use extract.layer: projection")
    if layer != "projection":
        visual.proj = None  # open_clip's ViT then returns the pooled, pre-projection features
    if layer == "cls_avgpatch":
        visual.output_tokens = True   # ... and the patch tokens after the same final norm
        visual = ClsAvgPatch(visual)
    return visual.eval().requires_grad_(False)


def _layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ClipprobeError(f"extract.layer={layer}: open_clip models give projection (encode_image), "
                             "pre_projection or cls_avgpatch (auto = projection); pre_logits is for timm and "
                             "Hugging Face models")
    return LAYERS[layer]


def _load_model(name: str, weights: str):
    """The whole open_clip model on CPU in fp32, its preprocess, architecture and weights id."""
    import open_clip

    named = names.check(name, weights)
    arch = _register(named)
    openai_origin = _is_openai_spelling(name)
    kwargs, state = {}, None
    if named.kind == names.RANDOM:
        weights_id = f"random(seed={RANDOM_SEED})"
    elif named.kind == "tag":
        kwargs["pretrained"] = named.tag
        openai_origin = open_clip.get_pretrained_cfg(arch, named.tag).get("quick_gelu", False)
        weights_id = f"{arch}/{named.tag}"
    else:
        openai_origin = openai_origin or checkpoint.is_torchscript(named.path)
        weights_id = f"sha256:{file_sha256(named.path)}"
    try:
        sizing.require_fits(lambda: open_clip.create_model(arch, force_quick_gelu=bool(openai_origin), device="meta"),
                            f"model.name={name}", loads_weights=named.kind != names.RANDOM)
    except ClipprobeError:
        raise
    except Exception as e:
        if named.config is None:
            raise
        # a config with every top-level key can still hold values open_clip cannot build
        raise ClipprobeError(f"model.name={name}: open_clip cannot build a model from this config "
                             f"({checkpoint.first_line(e)}); start from a config in open_clip's model_configs/ "
                             "folder") from None
    if named.kind == "file":
        state = checkpoint.read(named.path)
    torch.manual_seed(RANDOM_SEED)
    with _quiet(state is not None or named.kind == names.RANDOM):  # open_clip reports "initialized randomly": we know
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, force_quick_gelu=bool(openai_origin), **kwargs)
    if named.kind == "tag":
        checkpoint.require_finite(model.state_dict(), f"model.weights={weights}")
    if state is not None:
        problem = checkpoint.mismatch(model.state_dict(), state, arch)
        if problem:
            raise ClipprobeError(f"model.weights={weights} does not fit model.name={name}: {problem}; "
                                 "set model.name to the architecture the checkpoint was trained as")
        model.load_state_dict(state, strict=True)
    return model, preprocess, arch, weights_id


def load_image(name: str, weights: str, layer: str = "auto") -> Encoder:
    """Build the frozen image encoder on CPU, in fp32, in eval mode."""
    layer = _layer(layer)
    model, preprocess, arch, weights_id = _load_model(name, weights)
    proj = getattr(model.visual, "proj", None)
    width = {"pre_projection": 1, "cls_avgpatch": 2}
    dim = width[layer] * proj.shape[0] if layer in width and proj is not None else model.visual.output_dim
    visual = _image_tower(model, layer)
    return Encoder(visual=visual, preprocess=preprocess, arch=arch, weights_id=weights_id, embed_dim=int(dim),
                   layer=layer)


def load_text(name: str, weights: str) -> TextEncoder:
    """The same model and weights as `load_image`, for zero-shot: on CPU, fp32, eval mode."""
    import open_clip

    model, _, arch, weights_id = _load_model(name, weights)
    proj = getattr(model.visual, "proj", None)
    image_proj = proj.detach().clone() if isinstance(proj, torch.nn.Parameter) else None
    return TextEncoder(model=model.eval().requires_grad_(False), tokenizer=open_clip.get_tokenizer(arch),
                       arch=arch, weights_id=weights_id, image_proj=image_proj)
