"""zeroshot: test features against the class embeddings -> metrics/zeroshot.json."""

import json

import numpy as np

from clipprobe import atomic, identity, metrics
from clipprobe.encode import store
from clipprobe.stage import FEATURES, METRICS, TEXT, run
from clipprobe.zeroshot import score


def main():
    meta = json.loads((TEXT / "embeddings.json").read_text())
    if meta.get("text_tower") is False:   # the text stage's record: no score, and why
        atomic.write_json(METRICS / "zeroshot.json", {k: meta[k] for k in ("dataset", "model", "weights",
                                                                          "text_tower", "reason")})
        print(f"zero-shot: skipped, {meta['reason']} ({meta['model']}); record in {METRICS / 'zeroshot.json'}")
        return
    x, y, _, manifest = store.read_features(FEATURES / "test")
    identity.check(meta, manifest, ("arch", "weights_id", "classes"), str(FEATURES / "test"),
                   "the class embeddings were made for")
    with np.load(TEXT / "embeddings.npz", allow_pickle=False) as arrays:
        class_emb = arrays["class_emb"]
        proj = arrays["image_proj"] if manifest["layer"] == "pre_projection" else None
    scores = score.scores(x, class_emb, proj)
    metric = meta["metric"]
    result = {**metrics.metrics(y, scores, np.arange(len(meta["classes"])), metric), "n_test": len(y),
              "n_templates": len(meta["templates"]), "layer": manifest["layer"],
              "dataset": meta["dataset"], "model": meta["model"], "weights": meta["weights"]}
    atomic.write_json(METRICS / "zeroshot.json", result)
    print(f"zero-shot test {metric} {result['score']:.2f}% on {len(y)} images ({meta['model']}, {meta['weights']}, "
          f"{len(meta['templates'])} templates); metrics in {METRICS / 'zeroshot.json'}")


if __name__ == "__main__":
    run(main)
