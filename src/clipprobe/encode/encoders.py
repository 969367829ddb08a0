"""The encoder seam: `model.name` picks the model source whose loader builds the encoder.

The loader returns the frozen image tower
(with its eval preprocess and an identity for the feature fingerprint) and, where the model has one,
the text tower.  Each source's loader is imported here plainly, so DVC's closures see every one.

Sources: open_clip (every spelling without a prefix, see `encode.openclip`).
"""

from __future__ import annotations

from clipprobe.encode import openclip
from clipprobe.encode.towers import Encoder, TextEncoder


def load_encoder(name: str, weights: str, layer: str = "projection") -> Encoder:
    """The frozen image tower of `model.name` / `model.weights` on CPU, in fp32, in eval mode."""
    return openclip.load_image(name, weights, layer)


def load_text_encoder(name: str, weights: str) -> TextEncoder:
    """The same model's text tower, for zero-shot: on CPU, fp32, eval mode."""
    return openclip.load_text(name, weights)
