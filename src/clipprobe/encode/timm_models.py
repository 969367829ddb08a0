"""timm models (`model.name: timm:<name>`) as a model source: image towers without a text tower.

Weights: a pretrained tag of the model (`pretrained` = timm's default tag), a checkpoint (a state dict;
its classifier head, which the features never use, is dropped), or `random` (seeded).  Preprocess:
timm's own eval transform for the weights (`resolve_model_data_config` + `create_transform`).
Representation (`extract.layer`): `pre_logits` (what `auto` gives) is the model's pooled features
before its classifier, `forward_head(forward_features(x), pre_logits=True)`: timm's documented
feature output.  `cls_avgpatch` (ViT-style models with a class token) is the class token
concatenated with the mean of the patch tokens (register tokens left out) of the last layer, after
its norm: DINOv2's linear evaluation with one block and `use_avgpool` (facebookresearch/dinov2,
`dinov2/eval/linear.py`, `create_linear_input`).
"""

from __future__ import annotations

import torch

from clipprobe.digest import file_sha256
from clipprobe.encode import checkpoint, names, sizing
from clipprobe.encode.towers import Encoder
from clipprobe.errors import ClipprobeError

RANDOM_SEED = 0
LAYERS = {"auto": "pre_logits", "pre_logits": "pre_logits", "cls_avgpatch": "cls_avgpatch"}


class TimmTower(torch.nn.Module):
    """A timm model's features as `layer` names them (the classifier head is never run)."""

    def __init__(self, model: torch.nn.Module, layer: str):
        super().__init__()
        self.model, self.layer = model, layer
        self.prefix = int(getattr(model, "num_prefix_tokens", 0))   # class (and register) tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.model.forward_features(x)
        if self.layer == "cls_avgpatch":
            return torch.cat([tokens[:, 0], tokens[:, self.prefix:].mean(dim=1)], dim=-1)
        return self.model.forward_head(tokens, pre_logits=True)


def _layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ClipprobeError(f"extract.layer={layer}: timm models give pre_logits (auto) or cls_avgpatch; "
                             f"{layer} is for open_clip models")
    return LAYERS[layer]


def _without_classifier(state: dict, model: torch.nn.Module) -> dict:
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return {k: v for k, v in state.items() if not any(k.startswith(f"{h}.") for h in heads)}


def load_image(name: str, weights: str, layer: str = "auto") -> Encoder:
    """The frozen timm model on CPU, in fp32, in eval mode, without its classifier."""
    import timm
    from timm.data import create_transform, resolve_model_data_config

    layer = _layer(layer)
    named = names.check(name, weights)
    arch = named.arch
    sizing.require_fits(lambda: timm.create_model(arch, pretrained=False, num_classes=0), f"model.name={name}",
                        loads_weights=named.kind != names.RANDOM)
    torch.manual_seed(RANDOM_SEED)
    if named.kind == "tag":
        model = timm.create_model(f"{arch}.{named.tag}", pretrained=True, num_classes=0)
        checkpoint.require_finite(model.state_dict(), f"model.weights={weights}")
        weights_id = f"timm/{arch}.{named.tag}"
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=0)
        weights_id = f"random(seed={RANDOM_SEED})"
    if named.kind == "file":
        state = _without_classifier(checkpoint.read(named.path), model)
        problem = checkpoint.mismatch(model.state_dict(), state, f"timm's {arch}")
        if problem:
            raise ClipprobeError(f"model.weights={weights} does not fit model.name={name}: {problem}; "
                                 "set model.name to the architecture the checkpoint was trained as")
        model.load_state_dict(state, strict=True)
        weights_id = f"sha256:{file_sha256(named.path)}"
    if layer == "cls_avgpatch" and getattr(model, "cls_token", None) is None:
        raise ClipprobeError(f"extract.layer=cls_avgpatch: {name} has no class token (its features are "
                             f"{'pooled from patch tokens' if getattr(model, 'num_prefix_tokens', None) == 0 else 'a feature map'}); "
                             "use extract.layer: auto")
    model.eval().requires_grad_(False)
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    width = int(getattr(model, "head_hidden_size", None) or model.num_features)
    dim = 2 * int(model.num_features) if layer == "cls_avgpatch" else width
    return Encoder(visual=TimmTower(model, layer).eval(), preprocess=transform, arch=f"timm:{arch}",
                   weights_id=weights_id, embed_dim=dim, layer=layer)
