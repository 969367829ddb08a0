"""tune: choose C on a validation split (C: auto) or record the given C -> metrics/tune.json."""

import math

from clipprobe import params, probe, report, store
from clipprobe.stage import FEATURES, METRICS, run


def main():
    p = params.load()
    x, y, _, _ = store.read_features(FEATURES / "train")
    if p.C != "auto":
        report.write_json(METRICS / "tune.json", {"C": p.C})
        report.write_csv(METRICS / "tune_curve.csv", ["log10_C", "C", "val_top1"], [])
        print(f"C = {p.C} (given; no search)")
        return
    if (FEATURES / "val").is_dir():  # the dataset's official validation split
        x_val, y_val, _, _ = store.read_features(FEATURES / "val")
        x_tr, y_tr = x, y
    else:
        tr, val = probe.validation_split(y, p.tune.val_fraction, p.tune.seed)
        x_tr, y_tr, x_val, y_val = x[tr], y[tr], x[val], y[val]
    search = probe.search_C(x_tr, y_tr, x_val, y_val, max_iter=p.train.max_iter)
    report.write_json(METRICS / "tune.json", {"C": search.C, "val_top1": search.val_top1,
                                              "n_fits": search.n_fits, "n_train": len(y_tr),
                                              "n_val": len(y_val)})
    report.write_csv(METRICS / "tune_curve.csv", ["log10_C", "C", "val_top1"],
                     [(round(math.log10(c), 6), c, acc) for c, acc in search.curve.items()])
    print(f"C = {search.C:.6g} (validation top-1 {search.val_top1:.2f}%, {search.n_fits} fits)")


if __name__ == "__main__":
    run(main)
