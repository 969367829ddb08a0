"""What every model source gives the pipeline: the image tower and, where there is one, the text tower.

The frozen image tower comes with its eval preprocess and what identifies its weights (`Encoder`), the text tower where the model has one (`TextEncoder`), and
placing a tower on a device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipprobe.encode import sizing


@dataclass
class Encoder:
    """The frozen image tower, its preprocess, what identifies its weights, and the representation
    it gives (`layer`: the source's name for `extract.layer`, `auto` resolved)."""
    visual: torch.nn.Module
    preprocess: object
    arch: str
    weights_id: str
    embed_dim: int
    layer: str


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


def place(encoder: Encoder, device: torch.device, dtype: torch.dtype) -> Encoder:
    """Move the image tower to `device` with its weights in `dtype` (refused, in one line, where a
    GPU's free memory cannot hold them).

    Casting the weights, not autocast: on CPU, autocast takes nn.MultiheadAttention off its
    fused inference path and copies weights on every call, which made bf16 slower than fp32.
    """
    sizing.require_fits_on_device(encoder.visual, device, dtype, f"model.name ({encoder.arch})")
    encoder.visual.to(device=device, dtype=dtype)
    return encoder
