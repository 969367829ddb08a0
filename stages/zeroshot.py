"""zeroshot: test features against the class embeddings -> metrics/zeroshot.json (the headline
`score`, its 95% interval, `n_test`), results/zeroshot.json (the record) and results/zeroshot.parquet
(per-image predictions)."""

import numpy as np

from clipprobe import atomic, identity, intervals, notes, results
from clipprobe.encode import store
from clipprobe.stage import FEATURES, METRICS, RESULTS, TEXT, run
from clipprobe.zeroshot import score


def main():
    meta = atomic.read_json(TEXT / "embeddings.json", "rerun `dvc repro -f text`")
    if meta.get("text_tower") is False:   # the text stage's record: no score, and why
        record = {**results.identity(store.read_manifest(FEATURES / "test")), "params": meta.get("params", {}),
                  "text_tower": False, "skipped": meta["reason"], "notes": []}
        atomic.write_json(RESULTS / "zeroshot.json", record)
        atomic.write_json(METRICS / "zeroshot.json", results.metrics_file(record))
        results.write_predictions(RESULTS / "zeroshot.parquet", np.zeros(0), np.zeros(0, np.int64),
                                  np.zeros((0, len(meta["classes"]))), np.arange(len(meta["classes"])))
        print(f"zero-shot: skipped, {meta['reason']} ({meta['model']}); record in {RESULTS / 'zeroshot.json'}")
        return
    x, y, ids, manifest = store.read_features(FEATURES / "test")
    identity.check(meta, manifest, ("arch", "weights_id", "classes"), str(FEATURES / "test"),
                   "the class embeddings were made for")
    with np.load(TEXT / "embeddings.npz", allow_pickle=False) as arrays:
        class_emb = arrays["class_emb"]
        # only open_clip's `projection` is in the text's space already; the other layers are the pooled
        # features before the image projection (cls_avgpatch: its class-token half), where there is one
        proj = arrays["image_proj"] if "image_proj" in arrays and manifest["layer"] != "projection" else None
    if manifest["layer"] == "cls_avgpatch":
        x = x[:, :x.shape[1] // 2]
    scores = score.scores(x, class_emb, proj)
    metric, classes = meta["metric"], np.arange(len(meta["classes"]))
    record = {**results.identity(manifest), "params": meta.get("params", {}), "metric": metric,
              "metrics": intervals.metrics_with_intervals(y, scores, classes, metric),
              "interval": intervals.METHOD, "n_test": len(y), "n_templates": len(meta["templates"])}
    said = notes.point_interval("zero-shot", metric, record["metrics"][metric], len(y))
    record["notes"] = notes.emit([said] if said else [])
    atomic.write_json(RESULTS / "zeroshot.json", record)
    atomic.write_json(METRICS / "zeroshot.json", results.metrics_file(record))
    results.write_predictions(RESULTS / "zeroshot.parquet", ids, y, scores, classes)
    m = record["metrics"][metric]
    print(f"zero-shot test {metric} {m['value']:.2f}% (95% interval {m['low']:.2f}-{m['high']:.2f}) on {len(y)} "
          f"images ({meta['model']}, {meta['weights']}, {len(meta['templates'])} templates); "
          f"metrics in {METRICS / 'zeroshot.json'}")


if __name__ == "__main__":
    run(main)
