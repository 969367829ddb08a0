"""text: the model's text tower embeds each class's prompts -> text/ (the zero-shot classifier,
cached by DVC per model, weights, classes and templates)."""

import json
import shutil

import numpy as np

from clipprobe import datasets, devices, encoders, params, prompts, registry, text
from clipprobe.stage import PREPARED, TEXT, run


def main():
    p = params.load()
    info = datasets.read_info(PREPARED)
    dataset, classes = info["dataset"], info["classes"]
    ps = prompts.load(p.zeroshot.templates, dataset, classes, named=registry.get(dataset) is not None)  # before the model
    encoder = encoders.load_text_encoder(p.model.name, p.model.weights)
    emb = text.class_embeddings(encoder, ps, devices.pick_device("auto"))
    arrays = {"class_emb": emb}
    if encoder.image_proj is not None:
        arrays["image_proj"] = encoder.image_proj.float().numpy()
    tmp = TEXT.with_name(f".{TEXT.name}.tmp")  # filled, then renamed: text/ is whole or absent
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.savez(tmp / "embeddings.npz", **arrays)
    meta = {"dataset": dataset, "classes": classes, "model": p.model.name, "arch": encoder.arch,
            "weights": p.model.weights, "weights_id": encoder.weights_id,
            "classnames": [list(n) for n in ps.classnames], "templates": list(ps.templates), "source": ps.source}
    (tmp / "embeddings.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(TEXT, ignore_errors=True)
    tmp.rename(TEXT)
    n = sum(len(ps.texts(i)) for i in range(len(classes)))
    print(f"text: {len(classes)} class embeddings from {n} prompts ({len(ps.templates)} templates; {ps.source})")


if __name__ == "__main__":
    run(main)
