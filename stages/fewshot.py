"""fewshot: k-shot probes over seeds on the cached features -> metrics/fewshot.json (per k the mean
score, its 95% interval and the spread over seeds), results/fewshot.json (the record: identity,
protocol, every metric, each seed, notes), metrics/fewshot.csv (the curve)."""

from clipprobe import atomic, notes, params, results
from clipprobe.encode import store
from clipprobe.probe import fewshot
from clipprobe.stage import FEATURES, METRICS, RESULTS, run

PROTOCOL = ("fewshot.shots", "fewshot.seeds", "train.max_iter", "train.solver")


def main():
    p = params.load()
    shots, seeds = list(p.fewshot.shots), p.fewshot.seeds
    x, y, manifest, val = store.read_train(FEATURES)
    classes = manifest["classes"]
    test_manifest = store.read_manifest(FEATURES / "test")   # the record names the test set it scores
    runs, skipped, said, y_te = [], [], [], None
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
        said = notes.emit([n for n in (notes.unconverged("few-shot searches", [i for r in runs for i in r.n_iters],
                                                         p.train.max_iter),) if n])
    else:
        print("few-shot is off (fewshot.shots: [])")
    record = {**results.identity(test_manifest), "params": results.param_values(p, PROTOCOL),
              **fewshot.summary(runs, skipped, classes, shots, seeds, y_te, p.train.max_iter), "notes": said}
    atomic.write_json(RESULTS / "fewshot.json", record)
    atomic.write_json(METRICS / "fewshot.json", fewshot.metrics_of(record))
    atomic.write_csv(METRICS / "fewshot.csv", fewshot.CURVE, fewshot.curve_rows(record))


if __name__ == "__main__":
    run(main)
