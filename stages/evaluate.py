"""evaluate: the probe on the test features -> metrics/accuracy.json (the dataset's headline metric
as `metric` and `score`, with the others) and plots."""

from clipprobe import atomic, identity, metrics
from clipprobe.encode import store
from clipprobe.probe import saved
from clipprobe.stage import FEATURES, METRICS, PROBE, run


def main():
    clf, info = saved.load(PROBE)
    x, y, _, manifest = store.read_features(FEATURES / "test")
    identity.check(info, manifest, identity.ENCODER_KEYS, str(FEATURES / "test"), "the probe was trained on")
    metric = info["metric"]
    multi_label = y.ndim == 2
    scores = clf.decision_function(x) if multi_label else clf.predict_proba(x)
    names = info["classes"]
    result = {**metrics.metrics(y, scores, clf.classes_, metric), "C": info["C"], "n_train": info["n_train"],
              "n_test": len(y), "n_skipped": len(manifest.get("skipped", [])),
              "dataset": info["dataset"], "model": info["model"], "weights": info["weights"], "layer": info["layer"]}
    absent = [] if multi_label else metrics.absent_classes(y, names)
    if absent:  # mean_per_class_recall averages the other classes: say so where the number is
        result["classes_absent_from_test"] = absent
    atomic.write_json(METRICS / "accuracy.json", result)
    if multi_label:   # no single predicted class: per class its 11-point AP, no confusion matrix
        atomic.write_csv(METRICS / "confusion.csv", ["actual", "predicted"], [])
        atomic.write_csv(METRICS / "per_class.csv", ["class", "accuracy"],
                         [(n, round(metrics.average_precision_11(y[:, k], scores[:, k]) * 100, 4))
                          for k, n in enumerate(names)])
    else:
        pred = clf.classes_[scores.argmax(axis=1)]
        atomic.write_csv(METRICS / "confusion.csv", ["actual", "predicted"],
                         [(names[a], names[b]) for a, b in zip(y, pred)])
        atomic.write_csv(METRICS / "per_class.csv", ["class", "accuracy"],
                         metrics.per_class_accuracy(y, pred, names))
    print(f"test {metric} {result['score']:.2f}% on {len(y)} images "
          f"({info['model']}, {info['weights']}, {info['dataset']}); metrics in {METRICS / 'accuracy.json'}")


if __name__ == "__main__":
    run(main)
