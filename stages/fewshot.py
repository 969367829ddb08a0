"""fewshot: k-shot probes over seeds on the cached features -> metrics/fewshot.json, metrics/fewshot.csv."""

from clipprobe import atomic, params
from clipprobe.encode import store
from clipprobe.probe import fewshot
from clipprobe.stage import FEATURES, METRICS, run


def main():
    p = params.load()
    shots, seeds = list(p.fewshot.shots), p.fewshot.seeds
    x, y, manifest, val = store.read_train(FEATURES)
    classes = manifest["classes"]
    runs, skipped = [], []
    if y.ndim == 2:  # k images per class is not defined when an image has several classes
        print(f"few-shot is not defined for the multi-label {manifest['dataset']}; fewshot.json stays empty")
        shots = []
    elif shots:
        x_te, y_te, _, _ = store.read_features(FEATURES / "test")
        runs, skipped = fewshot.grid(
            x, y, x_te, y_te, shots, seeds, val=val, max_iter=p.train.max_iter, solver=p.train.solver,
            device=p.train.device, memory=p.train.memory, metric=manifest["metric"],
            on_run=fewshot.progress())
        for s in skipped:
            print(fewshot.skip_note(s, classes))
    else:
        print("few-shot is off (fewshot.shots: [])")
    result = fewshot.summary(runs, skipped, classes, shots, seeds)
    atomic.write_json(METRICS / "fewshot.json", result)
    atomic.write_csv(METRICS / "fewshot.csv", fewshot.CURVE, fewshot.curve_rows(result))


if __name__ == "__main__":
    run(main)
