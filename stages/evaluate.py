"""evaluate: the probe on the test features -> metrics/accuracy.json (the headline `score`, its 95%
interval, `n_test`), results/evaluate.json (the record: identity, protocol, every metric with its
interval, notes), results/evaluate.parquet (per-image predictions) and plots."""

from clipprobe import atomic, identity, intervals, metrics, notes, results
from clipprobe.encode import store
from clipprobe.probe import saved
from clipprobe.report import confusion
from clipprobe.stage import FEATURES, METRICS, PLOTS, PROBE, RESULTS, run


def main():
    clf, info = saved.load(PROBE)
    x, y, ids, manifest = store.read_features(FEATURES / "test")
    identity.check(info, manifest, identity.ENCODER_KEYS, str(FEATURES / "test"), "the probe was trained on")
    metric = info["metric"]
    multi_label = y.ndim == 2
    scores = clf.decision_function(x) if multi_label else clf.predict_proba(x)
    names = info["classes"]
    record = {**results.identity(manifest), "params": info.get("params", {}), "metric": metric,
              "metrics": intervals.metrics_with_intervals(y, scores, clf.classes_, metric),
              "interval": intervals.METHOD, "n_test": len(y), "n_train": info["n_train"],
              "n_train_per_class_min": info.get("n_train_per_class_min"), "C": info["C"],
              "converged": info.get("converged"), "n_iter": info["n_iter"],
              "n_skipped": len(manifest.get("skipped", [])), "notes": info.get("notes", [])}
    said = notes.point_interval("test", metric, record["metrics"][metric], len(y))
    record["notes"] += notes.emit([said] if said else [])
    absent = [] if multi_label else metrics.absent_classes(y, names)
    if absent:  # mean_per_class_recall averages the other classes: say so where the number is
        record["classes_absent_from_test"] = absent
    atomic.write_json(RESULTS / "evaluate.json", record)
    atomic.write_json(METRICS / "accuracy.json", results.metrics_file(record))
    results.write_predictions(RESULTS / "evaluate.parquet", ids, y, scores, clf.classes_)
    if multi_label:   # no single predicted class: per class its 11-point AP, no confusion matrix
        atomic.write_csv(METRICS / "confusion.csv", ["actual", "predicted"], [])
        atomic.write_csv(METRICS / "per_class.csv", ["class", "accuracy"],
                         [(n, round(metrics.average_precision_11(y[:, k], scores[:, k]) * 100, 4))
                          for k, n in enumerate(names)])
        confusion.plot(PLOTS / "confusion.png", None, None, names, info["dataset"])
    else:
        pred = clf.classes_[scores.argmax(axis=1)]
        atomic.write_csv(METRICS / "confusion.csv", ["actual", "predicted"],
                         [(names[a], names[b]) for a, b in zip(y, pred)])
        atomic.write_csv(METRICS / "per_class.csv", ["class", "accuracy"],
                         metrics.per_class_accuracy(y, pred, names))
        confusion.plot(PLOTS / "confusion.png", y, pred, names, info["dataset"])
    m = record["metrics"][metric]
    print(f"test {metric} {m['value']:.2f}% (95% interval {m['low']:.2f}-{m['high']:.2f}) on {len(y)} images "
          f"({info['model']}, {info['weights']}, {info['dataset']}); metrics in {METRICS / 'accuracy.json'}")


if __name__ == "__main__":
    run(main)
