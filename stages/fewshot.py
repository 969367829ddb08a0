"""fewshot: k-shot probes over seeds on the cached features -> metrics/fewshot.json, metrics/fewshot.csv."""

from clipprobe import fewshot, params, registry, report, store
from clipprobe.stage import FEATURES, METRICS, run


def main():
    p = params.load()
    shots, seeds = list(p.fewshot.shots), p.fewshot.seeds
    x, y, _, manifest = store.read_features(FEATURES / "train")
    classes = manifest["classes"]
    runs, skipped = [], []
    if y.ndim == 2:  # k images per class is not defined when an image has several classes
        print(f"few-shot is not defined for the multi-label {manifest['dataset']}; fewshot.json stays empty")
        shots = []
    elif shots:
        val = None
        if (FEATURES / "val").is_dir():  # the dataset's official validation split
            x_val, y_val, _, _ = store.read_features(FEATURES / "val")
            val = (x_val, y_val)
        x_te, y_te, _, _ = store.read_features(FEATURES / "test")
        runs, skipped = fewshot.grid(
            x, y, x_te, y_te, shots, seeds, val=val, max_iter=p.train.max_iter, solver=p.train.solver,
            device=p.train.device, memory=p.train.memory, metric=registry.metric_of(manifest["dataset"]),
            on_run=lambda r: print(f"{r.k:>3}-shot seed {r.seed}: C = {r.C:.4g}, test top-1 {r.test['top1']:.2f}%"))
        for s in skipped:
            print(fewshot.skip_note(s, classes))
    else:
        print("few-shot is off (fewshot.shots: [])")
    result = fewshot.summary(runs, skipped, classes, shots, seeds)
    report.write_json(METRICS / "fewshot.json", result)
    report.write_csv(METRICS / "fewshot.csv", fewshot.CURVE, fewshot.curve_rows(result))


if __name__ == "__main__":
    run(main)
