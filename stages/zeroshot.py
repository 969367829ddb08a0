"""zeroshot: test features against the class embeddings -> metrics/zeroshot.json."""

import json

import numpy as np

from clipprobe import registry, report, store, zeroshot
from clipprobe.stage import FEATURES, METRICS, TEXT, run


def main():
    meta = json.loads((TEXT / "embeddings.json").read_text())
    x, y, _, manifest = store.read_features(FEATURES / "test")
    zeroshot.check_features(meta, manifest, str(FEATURES / "test"))
    with np.load(TEXT / "embeddings.npz", allow_pickle=False) as arrays:
        class_emb = arrays["class_emb"]
        proj = arrays["image_proj"] if manifest["layer"] == "pre_projection" else None
    scores = zeroshot.scores(x, class_emb, proj)
    metric = registry.metric_of(meta["dataset"])
    result = {**report.metrics(y, scores, np.arange(len(meta["classes"])), metric), "n_test": len(y),
              "n_templates": len(meta["templates"]), "layer": manifest["layer"],
              "dataset": meta["dataset"], "model": meta["model"], "weights": meta["weights"]}
    report.write_json(METRICS / "zeroshot.json", result)
    print(f"zero-shot test {metric} {result['score']:.2f}% on {len(y)} images ({meta['model']}, {meta['weights']}, "
          f"{len(meta['templates'])} templates); metrics in {METRICS / 'zeroshot.json'}")


if __name__ == "__main__":
    run(main)
