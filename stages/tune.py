"""tune: choose C on a validation split (C: auto) or record the given C -> metrics/tune.json,
the search curve, and the probe at the chosen C as the train stage's warm start.  The search
selects on the dataset's headline metric, which the features' manifest names."""

import math

from clipprobe import atomic, metrics, params
from clipprobe.encode import store
from clipprobe.probe import saved, search, validation
from clipprobe.stage import FEATURES, METRICS, TUNED, run

CURVE = ["log10_C", "C", "val_score", "metric", "fit", "n_iter"]


def main():
    p = params.load()
    x, y, manifest, val = store.read_train(FEATURES)
    metric = manifest["metric"]
    if p.C != "auto":
        atomic.write_json(METRICS / "tune.json", {"C": p.C, "metric": metric})
        atomic.write_csv(METRICS / "tune_curve.csv", CURVE, [])
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
    n_iter = sum(it for _, _, it in s.fits)
    atomic.write_json(METRICS / "tune.json", {"C": s.C, "metric": metric, "val_score": s.val_score,
                                              "n_fits": s.n_fits, "n_iter": n_iter, "early_exit": s.early_exit,
                                              "n_train": len(y_tr), "n_val": len(y_val)})
    order = {c: i for i, (c, _, _) in enumerate(s.fits, 1)}
    atomic.write_csv(METRICS / "tune_curve.csv", CURVE,
                     [(round(math.log10(c), 6), c, acc, metric, order[c], it) for c, acc, it in sorted(s.fits)])
    saved.save_start(s.probe, TUNED / "start.npz")
    print(f"C = {s.C:.6g} (validation {metric} {s.val_score:.2f}%, {s.n_fits} fits, {n_iter} L-BFGS iterations"
          + (", coarse grid stopped past the peak)" if s.early_exit else ")"))


if __name__ == "__main__":
    run(main)
