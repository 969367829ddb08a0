"""Hugging Face transformers vision models (`model.name: hf:<repo id or directory>`) as a model source.

`AutoModel` with the model's own `AutoImageProcessor`, run per image in the data loader (the
library's transform as it is).  Weights: `pretrained` (the repo's or the directory's) or `random`
(initialised from its config, seeded).  Of a model with a text tower beside its image tower the
image tower (`vision_model`) is probed; CLIP's and SigLIP's text towers serve zero-shot (`load_text`:
`get_text_features` on prompts tokenized as the model was trained, padded to its context length).
Representation (`extract.layer`):
`pre_logits` (what `auto` gives) is the model's pooled output (`pooler_output`: DINOv2's and CLIP's
normalised class token, SigLIP's attention pooling, ConvNeXt's normalised average pool), or the
class token of `last_hidden_state` where the model has no pooler or the checkpoint has no trained one
(a classification checkpoint: its classifier reads that token); `cls_avgpatch` (ViT-style models
with a class token) is the class token concatenated with the mean of the patch tokens after the
final norm, as for timm (CLIP's vision model normalises only its pooled token: the tokens are normalised
here the same way).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from PIL import Image

from clipprobe.digest import file_sha256
from clipprobe.encode import checkpoint, names, sizing
from clipprobe.encode.towers import Encoder, TextEncoder
from clipprobe.errors import ClipprobeError

RANDOM_SEED = 0
LAYERS = {"auto": "pre_logits", "pre_logits": "pre_logits", "cls_avgpatch": "cls_avgpatch"}
TEXT_TOWERS = ("clip", "siglip")   # the `model_type`s whose text tower zero-shot reads


class HfTower(torch.nn.Module):
    """A transformers vision model's features as `layer` names them."""

    def __init__(self, model: torch.nn.Module, layer: str, prefix: int, pooler: bool):
        super().__init__()
        self.model, self.layer, self.prefix, self.pooler = model, layer, prefix, pooler
        # CLIP's vision model gives its tokens before its final norm, which it applies to the pooled token only
        clip = getattr(model.config, "model_type", "") == "clip_vision_model"
        self.norm = getattr(model, "vision_model", model).post_layernorm if clip else torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)
        if self.layer == "cls_avgpatch":
            tokens = self.norm(out.last_hidden_state)
            return torch.cat([tokens[:, 0], tokens[:, self.prefix:].mean(dim=1)], dim=-1)
        pooled = getattr(out, "pooler_output", None) if self.pooler else None
        return (out.last_hidden_state[:, 0] if pooled is None else pooled).flatten(1)   # ResNet pools to C x 1 x 1


class HfImageTransform:
    """The model's image processor on one PIL image -> its pixel tensor (C x H x W)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:   # what the feature fingerprint holds: the processor and all its settings
        settings = json.dumps(json.loads(self.processor.to_json_string()), sort_keys=True)
        return f"{type(self.processor).__name__}({settings})"


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ClipprobeError("Hugging Face models need transformers; pip install 'clipprobe[hf]'") from None
    transformers.utils.logging.disable_progress_bar()   # one bar per weights file otherwise
    return transformers


def _layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ClipprobeError(f"extract.layer={layer}: Hugging Face models give pre_logits (auto) or "
                             f"cls_avgpatch; {layer} is for open_clip models")
    return LAYERS[layer]


def _prefix_tokens(model, name: str) -> int:
    """Tokens before the patch tokens (class, distillation, registers); stops where there is no class token."""
    emb = getattr(model, "embeddings", None)
    if getattr(emb, "cls_token", None) is None and getattr(emb, "class_embedding", None) is None:
        raise ClipprobeError(f"extract.layer=cls_avgpatch: {name} has no class token; use extract.layer: auto")
    return (1 + int(getattr(emb, "distillation_token", None) is not None)
            + int(getattr(model.config, "num_register_tokens", 0) or 0))


def _check_loaded(model, missing: list[str], name: str) -> bool:
    """Stop where transformers initialised part of the model at random for want of weights; a missing
    pooler alone (a classification checkpoint, such as ViTForImageClassification's, loaded as the base
    model) only means the pooled output is untrained: then the class token is used (False)."""
    untrained = [k for k in missing if not k.startswith("pooler.")]
    if untrained:
        raise ClipprobeError(f"model.name={name}: its weights lack {len(untrained)} tensor(s) of "
                             f"{type(model).__name__} (e.g. {untrained[0]}), which transformers would initialise "
                             "at random; use the repo of the base model, or model.weights=random")
    return not missing


def _weights_id(named: names.Named, config) -> str:
    if named.kind == names.RANDOM:   # the config decides the model: a changed config is other features
        digest = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()[:16]
        return f"random(seed={RANDOM_SEED}, config sha256:{digest})"
    if named.kind == "dir":
        files = sorted(p for p in Path(named.arch).iterdir() if p.suffix in (".safetensors", ".bin"))
        blob = "".join(f"{p.name}:{file_sha256(p)}" for p in files)
        return f"sha256:{hashlib.sha256(blob.encode()).hexdigest()}"
    return f"hf/{named.arch}@{names.hub_revision(named.cache) or 'unknown'}"


def _config(name: str, named: names.Named):
    try:
        return _transformers().AutoConfig.from_pretrained(named.arch, local_files_only=named.cached)
    except (OSError, ValueError, KeyError) as e:
        raise ClipprobeError(f"model.name={name}: transformers cannot load its config ({checkpoint.first_line(e)}); "
                             "is transformers recent enough for it?") from None


def _load(name: str, named: names.Named):
    """(the whole model on CPU in fp32, its config, whether its pooler is trained)."""
    transformers = _transformers()
    config = _config(name, named)
    sizing.require_fits(lambda: transformers.AutoModel.from_config(config), f"model.name={name}",
                        loads_weights=named.kind != names.RANDOM)
    torch.manual_seed(RANDOM_SEED)
    if named.kind == names.RANDOM:
        return transformers.AutoModel.from_config(config), config, True
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()   # its loading report: what it says is checked here
    try:
        model, info = transformers.AutoModel.from_pretrained(named.arch, output_loading_info=True,
                                                             local_files_only=named.cached)
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    pooler = _check_loaded(model, sorted(info["missing_keys"]), name)
    checkpoint.require_finite(model.state_dict(), f"model.name={name}")
    return model, config, pooler


def _auto(kind: str, name: str, named: names.Named):
    """transformers' AutoImageProcessor or AutoTokenizer for the model, or one line."""
    try:
        return getattr(_transformers(), kind).from_pretrained(named.arch, local_files_only=named.cached)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ClipprobeError(f"model.name={name}: transformers cannot load its {kind.removeprefix('Auto')} "
                             f"({checkpoint.first_line(e)}); is it a vision model, and is transformers recent "
                             "enough for it?") from None


def load_image(name: str, weights: str, layer: str = "auto") -> Encoder:
    """The frozen image tower on CPU, in fp32, in eval mode, with its image processor."""
    layer = _layer(layer)
    named = names.check(name, weights)
    processor = _auto("AutoImageProcessor", name, named)
    model, config, pooler = _load(name, named)
    if hasattr(model, "get_image_features") and hasattr(model, "vision_model"):
        model = model.vision_model   # CLIP, SigLIP, ...: the image tower alone
    model.eval().requires_grad_(False)
    prefix = _prefix_tokens(model, name) if layer == "cls_avgpatch" else 0
    tower = HfTower(model, layer, prefix, pooler).eval()
    transform = HfImageTransform(processor)
    probe = transform(Image.new("RGB", (64, 64))).unsqueeze(0)
    with torch.inference_mode():
        dim = tower(probe).shape[-1]   # the width of what the tower gives, whatever the model family
    return Encoder(visual=tower, preprocess=transform, arch=f"hf:{config.model_type}",
                   weights_id=_weights_id(named, config), embed_dim=int(dim), layer=layer)


def no_text_tower(name: str) -> str | None:
    """Why zero-shot has no text tower for this hf model (None for CLIP and SigLIP), from its config."""
    model_type = _config(name, names.check(name, names.RANDOM)).model_type
    if model_type in TEXT_TOWERS:
        return None
    return (f"a Hugging Face {model_type} model is probed on its image tower; zero-shot reads the text towers of "
            f"open_clip models and of Hugging Face {' and '.join(TEXT_TOWERS)} models")


class HfTextModel(torch.nn.Module):
    """`encode_text` of a transformers CLIP or SigLIP model: `get_text_features` on token ids."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model.get_text_features(input_ids=tokens)
        return out if isinstance(out, torch.Tensor) else out.pooler_output   # transformers < 5 gives the tensor


class HfTokenizer:
    """The model's tokenizer as the zero-shot classifier calls one: texts -> token ids [n, context],
    cut at and padded to the context length (SigLIP was trained on prompts padded so; CLIP's causal
    text tower reads its end-of-text token before any padding)."""

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer, self.context_length = tokenizer, context_length

    def __call__(self, texts: list[str], context_length: int | None = None) -> torch.Tensor:
        n = context_length or self.context_length
        return self.tokenizer(texts, padding="max_length", max_length=n, truncation=True,
                              return_tensors="pt")["input_ids"]


def load_text(name: str, weights: str) -> TextEncoder:
    """The same model's text tower and tokenizer (CLIP, SigLIP; `no_text_tower` first), on CPU in fp32."""
    named = names.check(name, weights)
    tokenizer = _auto("AutoTokenizer", name, named)
    model, config, _ = _load(name, named)
    proj = getattr(model, "visual_projection", None)   # CLIP's: the pooled image features -> the text's space
    return TextEncoder(model=HfTextModel(model).eval().requires_grad_(False),
                       tokenizer=HfTokenizer(tokenizer, int(config.text_config.max_position_embeddings)),
                       arch=f"hf:{config.model_type}", weights_id=_weights_id(named, config),
                       image_proj=None if proj is None else proj.weight.detach().T.clone())
