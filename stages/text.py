"""text: the model's text tower embeds each class's prompts -> text/ (the zero-shot classifier,
cached by DVC per model, weights, classes and templates)."""

import sys

import numpy as np

from clipprobe import atomic, devices, identity, params
from clipprobe.data import prepared
from clipprobe.encode import encoders
from clipprobe.stage import PREPARED, TEXT, run
from clipprobe.zeroshot import classifier, prompts


def main():
    p = params.load()
    info = prepared.read_info(PREPARED)
    classes = info["classes"]
    identity_keys = {**{k: info.get(k) for k in identity.DATA_KEYS}, "model": p.model.name, "weights": p.model.weights}
    missing = encoders.no_text_tower(p.model.name)
    if missing:   # zero-shot is skipped with a record, not an error: the image tower is still probed
        with atomic.folder(TEXT) as tmp:
            atomic.write_json(tmp / "embeddings.json", {**identity_keys, "text_tower": False, "reason": missing})
        print(f"text: no text tower for {p.model.name} ({missing}); zero-shot is skipped")
        return
    ps = prompts.load(p.zeroshot.templates, info["dataset"], classes, named=info["named"], own=info)  # before the model
    encoder = encoders.load_text_encoder(p.model.name, p.model.weights)
    emb, cuts = classifier.class_embeddings(encoder, ps, devices.pick_device("auto"))
    for c in cuts:
        print(classifier.warning(c, ps, encoder.tokenizer.context_length), file=sys.stderr)
    arrays = {"class_emb": emb}
    if encoder.image_proj is not None:
        arrays["image_proj"] = encoder.image_proj.float().numpy()
    meta = {**identity_keys, "arch": encoder.arch, "weights_id": encoder.weights_id,
            "classnames": [list(n) for n in ps.classnames], "templates": list(ps.templates), "source": ps.source,
            "params": {"zeroshot.templates": p.zeroshot.templates},   # what zero-shot's record names as its protocol
            "cut_prompts": {classes[c.label]: [list(pair) for pair in c.cut] for c in cuts}}   # left out: (name, template)
    with atomic.folder(TEXT) as tmp:   # text/ is whole or absent
        np.savez(tmp / "embeddings.npz", **arrays)
        atomic.write_json(tmp / "embeddings.json", meta)
    n = sum(len(ps.texts(i)) for i in range(len(classes))) - sum(len(c.cut) for c in cuts)
    t = len(ps.templates)
    print(f"text: {len(classes)} class embeddings from {n} prompts ({t} template{'s' * (t != 1)}; {ps.source})")


if __name__ == "__main__":
    run(main)
