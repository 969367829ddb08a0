"""evaluate: the probe on the test features -> metrics/accuracy.json and plots."""

from clipprobe import probe, report, store
from clipprobe.stage import FEATURES, METRICS, PROBE, run


def main():
    clf, info = probe.load(PROBE)
    x, y, _, manifest = store.read_features(FEATURES / "test")
    probe.check_features(info, manifest, str(FEATURES / "test"))
    scores = clf.predict_proba(x)
    pred = clf.classes_[scores.argmax(axis=1)]
    names = info["classes"]
    result = {**report.metrics(y, scores, clf.classes_), "C": info["C"], "n_train": info["n_train"],
              "n_test": len(y), "n_skipped": len(manifest.get("skipped", [])),
              "dataset": info["dataset"], "model": info["model"], "weights": info["weights"]}
    report.write_json(METRICS / "accuracy.json", result)
    report.write_csv(METRICS / "confusion.csv", ["actual", "predicted"],
                     [(names[a], names[b]) for a, b in zip(y, pred)])
    report.write_csv(METRICS / "per_class.csv", ["class", "accuracy"], report.per_class_accuracy(y, pred, names))
    print(f"test top-1 {result['top1']:.2f}% on {len(y)} images "
          f"({info['model']}, {info['weights']}, {info['dataset']}); metrics in {METRICS / 'accuracy.json'}")


if __name__ == "__main__":
    run(main)
