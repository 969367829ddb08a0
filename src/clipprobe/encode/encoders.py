"""The encoder seam: `model.name` picks the model source whose loader builds the encoder.

The loader returns the frozen image tower
(with its eval preprocess and an identity for the feature fingerprint) and, where the model has one
(open_clip models; Hugging Face CLIP and SigLIP), the text tower.  Each source's loader is imported
here plainly, so DVC's closures see every one.

Sources, by `model.name`'s prefix (`encode.names`): `timm:` (`encode.timm_models`), `hf:`
(`encode.hf_models`), and every other spelling open_clip (`encode.openclip`).
"""

from __future__ import annotations

from clipprobe.encode import hf_models, names, openclip, timm_models
from clipprobe.encode.towers import Encoder, TextEncoder

_IMAGE = {"open_clip": openclip.load_image, "timm": timm_models.load_image, "hf": hf_models.load_image}
_TEXT = {"open_clip": openclip.load_text, "hf": hf_models.load_text}


def load_encoder(name: str, weights: str, layer: str = "auto") -> Encoder:
    """The frozen image tower of `model.name` / `model.weights` on CPU, in fp32, in eval mode;
    `layer` is `extract.layer` (`auto`: the source's default representation)."""
    return _IMAGE[names.split(name)[0]](name, weights, layer)


def no_text_tower(name: str) -> str | None:
    """Why `model.name` has no text tower for zero-shot (None where it has one)."""
    source = names.split(name)[0]
    if source == "timm":
        return "timm models are image towers only"
    return hf_models.no_text_tower(name) if source == "hf" else None


def load_text_encoder(name: str, weights: str) -> TextEncoder:
    """The same model's text tower, for zero-shot: on CPU, fp32, eval mode (`no_text_tower` first)."""
    return _TEXT[names.split(name)[0]](name, weights)
