"""Zero-shot classifier weights from the text tower, built as the CLIP paper builds them.

As OpenAI's notebook Prompt_Engineering_for_ImageNet does: every prompt of a class is embedded and L2-normalised,
and the class's embedding is their mean, normalised again."""

from __future__ import annotations

import numpy as np
import torch

from clipprobe.encode.towers import TextEncoder
from clipprobe.zeroshot.prompts import Prompts


def class_embeddings(encoder: TextEncoder, prompts: Prompts, device: torch.device,
                     batch_size: int = 256) -> np.ndarray:
    """[classes, embed dim] float32, unit rows, in label order; the model runs in fp32."""
    texts, owner = [], []
    for label in range(len(prompts.classnames)):
        class_texts = prompts.texts(label)
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
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)
