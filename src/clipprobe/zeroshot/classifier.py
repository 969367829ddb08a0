"""Zero-shot classifier weights from the text tower, built as the CLIP paper builds them.

As OpenAI's notebook Prompt_Engineering_for_ImageNet does: every prompt of a class is embedded and L2-normalised,
and the class's embedding is their mean, normalised again.

The text tower reads a fixed number of tokens and its tokenizer cuts the rest silently (OpenAI's
`clip.tokenize` refuses such text instead).  A prompt cut inside or before its class name tells the
classes apart no better than chance, so such prompts are left out, with a warning per class; a class
left with no prompt, or two classes with the same embedding, stop the stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipprobe.encode.towers import TextEncoder
from clipprobe.errors import ClipprobeError
from clipprobe.zeroshot.prompts import Prompts

SAME = 1e-5  # unit class embeddings closer than this are the same vector (float32 noise is ~1e-7)


@dataclass(frozen=True)
class Cut:
    """The prompts of one class whose class name the tokenizer cuts, as (name, template)."""
    label: int
    cut: tuple[tuple[str, str], ...]
    total: int


def _truncated(tokenizer, texts: list[str], chunk: int = 4096) -> np.ndarray:
    """Per text, whether the tokenizer cuts it at its context length: tokenized with room to
    spare, a text that fits is its usual tokens followed by padding only."""
    ctx = tokenizer.context_length
    out = []
    for i in range(0, len(texts), chunk):
        short = np.asarray(tokenizer(texts[i:i + chunk]))
        long = np.asarray(tokenizer(texts[i:i + chunk], context_length=4 * ctx))
        out.append((long[:, :ctx] != short).any(axis=1) | (long[:, ctx:] != long[:, -1:]).any(axis=1))
    return np.concatenate(out) if out else np.zeros(0, bool)


def _head(template: str, name: str) -> str:
    return template[:template.index("{}")] + name


def cut_prompts(tokenizer, prompts: Prompts) -> list[Cut]:
    """The classes with prompts the tokenizer cuts inside or before the class name: what a
    template reads up to the end of the name is longer than the text tower's context."""
    heads = sorted({_head(t, name) for names in prompts.classnames for name in names for t in prompts.templates})
    cut_heads = {h for h, cut in zip(heads, _truncated(tokenizer, heads)) if cut}
    out = []
    for label, names in enumerate(prompts.classnames):
        cut = tuple((name, t) for name in names for t in prompts.templates if _head(t, name) in cut_heads)
        if cut:
            out.append(Cut(label, cut, len(names) * len(prompts.templates)))
    return out


def warning(c: Cut, prompts: Prompts, context: int) -> str:
    """The line a class with cut prompts gets (some of its prompts are left out)."""
    name, template = c.cut[0]
    return (f"warning: class {prompts.classnames[c.label][0]!r}: {len(c.cut)} of its {c.total} prompts are cut "
            f"before the class name ends (the text tower reads {context} tokens; e.g. template {template!r} with "
            f"{name!r}); they are left out of its embedding")


def _check_prompts(cuts: list[Cut], prompts: Prompts, context: int) -> None:
    for c in cuts:
        if len(c.cut) == c.total:
            name, template = c.cut[0]
            raise ClipprobeError(f"zeroshot.templates: class {prompts.classnames[c.label][0]!r}: the text tower reads "
                                 f"{context} tokens and every prompt of this class is cut before its name ends "
                                 f"(e.g. template {template!r} with {name!r}); shorten the template or the class "
                                 "name in the prompts file")


def _check_distinct(emb: np.ndarray, prompts: Prompts) -> None:
    close = (emb @ emb.T) > 1 - SAME ** 2 / 2     # |a - b| < SAME for unit vectors
    np.fill_diagonal(close, False)
    if close.any():
        a, b = (int(i) for i in np.argwhere(close)[0])
        raise ClipprobeError(f"zeroshot.templates: classes {prompts.classnames[a][0]!r} and {prompts.classnames[b][0]!r} "
                             "get the same class embedding (their prompts read the same to the text tower), so "
                             "zero-shot could not tell them apart; give them distinct names in the prompts file")


def class_embeddings(encoder: TextEncoder, prompts: Prompts, device: torch.device,
                     batch_size: int = 256) -> tuple[np.ndarray, list[Cut]]:
    """([classes, embed dim] float32 unit rows in label order, the classes whose cut prompts were
    left out: `warning` gives each its line); the model runs in fp32."""
    cuts = cut_prompts(encoder.tokenizer, prompts)
    _check_prompts(cuts, prompts, encoder.tokenizer.context_length)
    dropped = {(c.label, name, t) for c in cuts for name, t in c.cut}
    texts, owner = [], []
    for label, names in enumerate(prompts.classnames):
        class_texts = [t.format(name) for name in names for t in prompts.templates
                       if (label, name, t) not in dropped]
        texts += class_texts
        owner += [label] * len(class_texts)
    model = encoder.model.to(device=device, dtype=torch.float32)
    chunks = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            tokens = encoder.tokenizer(texts[i:i + batch_size]).to(device)
            chunks.append(torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    emb = torch.cat(chunks).double().numpy()
    owner = np.asarray(owner)
    means = np.stack([emb[owner == label].mean(axis=0) for label in range(len(prompts.classnames))])
    bad = ~np.isfinite(means).all(axis=1)
    if bad.any():
        raise ClipprobeError(f"the text tower gives NaN or inf embeddings (class {prompts.classnames[int(np.argmax(bad))][0]!r} "
                             f"first, {int(bad.sum())} of {len(bad)} classes): its weights are broken; check model.weights")
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    _check_distinct(means, prompts)
    return means.astype(np.float32), cuts
