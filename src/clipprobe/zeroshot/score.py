"""Zero-shot classification of cached image features: the class embedding nearest in cosine.

The class embeddings are `zeroshot.classifier.class_embeddings`."""

from __future__ import annotations

import numpy as np

from clipprobe.errors import ClipprobeError


def scores(x: np.ndarray, class_emb: np.ndarray, image_proj: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of each image to each class, [images, classes].

    `image_proj`: for pre-projection features (`extract.layer: pre_projection`, and the class-token
    half of `cls_avgpatch`), the image tower's output projection, applied first as `encode_image` would.
    """
    for name, a in (("class embeddings", class_emb), ("image projection", image_proj)):
        if a is not None and not np.isfinite(a).all():
            raise ClipprobeError(f"text/embeddings.npz: the {name} hold NaN or inf (a broken text tower or "
                                 "checkpoint); fix model.weights, then rerun `dvc repro -f text`")
    x = np.asarray(x, dtype=np.float64)
    if image_proj is not None:
        x = x @ np.asarray(image_proj, dtype=np.float64)
    if x.shape[1] != class_emb.shape[1]:
        raise ClipprobeError(f"image features have {x.shape[1]} dimensions, the class embeddings "
                             f"{class_emb.shape[1]}; run `dvc repro` so both come from one model")
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ np.asarray(class_emb, dtype=np.float64).T
