"""tune: choose C on a validation split (C: auto) or record the given C -> metrics/tune.json (numbers),
results/tune.json (the record: protocol, fits, convergence, notes), the search curve and its figure,
and the probe at the chosen C as the train stage's warm start.  The search selects on the dataset's
headline metric, which the features' manifest names."""

import math

from clipprobe import atomic, metrics, notes, params, results
from clipprobe.encode import store
from clipprobe.probe import saved, search, validation
from clipprobe.report import csearch
from clipprobe.stage import FEATURES, METRICS, PLOTS, RESULTS, TUNED, run

CURVE = ["log10_C", "C", "val_score", "metric", "fit", "n_iter"]
# the params a probe's protocol depends on (copied to the probe, and to the evaluate record)
PROTOCOL = ("C", "tune.val_fraction", "tune.seed", "train.max_iter", "train.solver")


def main():
    p = params.load()
    x, y, manifest, val = store.read_train(FEATURES)
    metric = manifest["metric"]
    record = {**results.identity(manifest), "params": results.param_values(p, PROTOCOL), "metric": metric}
    if p.C != "auto":
        atomic.write_json(METRICS / "tune.json", {"C": p.C})
        atomic.write_json(RESULTS / "tune.json", {**record, "C": p.C, "searched": False, "notes": []})
        atomic.write_csv(RESULTS / "tune_curve.csv", CURVE, [])
        csearch.plot(PLOTS / "tune.png", manifest["dataset"], metric, p.C, None)
        saved.save_start(None, TUNED / "start.npz")
        print(f"C = {p.C} (given; no search)")
        return
    if val is not None:  # the dataset's official validation split
        (x_tr, y_tr), (x_val, y_val) = (x, y), val
    else:
        tr, va = validation.validation_split(y, p.tune.val_fraction, p.tune.seed)
        x_tr, y_tr, x_val, y_val = x[tr], y[tr], x[va], y[va]
    print(f"C search on {len(y_tr)} train / {len(y_val)} validation images ({x.shape[1]} features), "
          f"validation {metric} per fit:", flush=True)
    s = search.search_C(x_tr, y_tr, x_val, y_val, max_iter=p.train.max_iter, solver=p.train.solver,
                        device=p.train.device, memory=p.train.memory, score=metrics.scorer(metric),
                        on_fit=search.progress(metric))
    iters = [it for _, _, it in s.fits]
    said = notes.emit([n for n in (notes.small_validation(y_val, manifest["classes"]),
                                   notes.unconverged("C search", iters, p.train.max_iter)) if n])
    atomic.write_json(METRICS / "tune.json", {"C": s.C, "val_score": s.val_score, "n_val": len(y_val)})
    atomic.write_json(RESULTS / "tune.json", {
        **record, "C": s.C, "searched": True, "val_score": s.val_score, "n_train": len(y_tr), "n_val": len(y_val),
        "n_fits": s.n_fits, "n_iter": sum(iters), "early_exit": s.early_exit,
        "converged": all(it < p.train.max_iter for it in iters), "notes": said})
    order = {c: i for i, (c, _, _) in enumerate(s.fits, 1)}
    atomic.write_csv(RESULTS / "tune_curve.csv", CURVE,
                     [(round(math.log10(c), 6), c, acc, metric, order[c], it) for c, acc, it in sorted(s.fits)])
    csearch.plot(PLOTS / "tune.png", manifest["dataset"], metric, s.C, s.fits, s.val_score, len(y_val), said)
    saved.save_start(s.probe, TUNED / "start.npz")
    print(f"C = {s.C:.6g} (validation {metric} {s.val_score:.2f}% on {len(y_val)} images, {s.n_fits} fits, "
          f"{sum(iters)} L-BFGS iterations" + (", coarse grid stopped past the peak)" if s.early_exit else ")"))


if __name__ == "__main__":
    run(main)
