"""train: the logistic-regression probe on all training features (train + the official val split where
there is one) with the tuned C -> probe/, starting L-BFGS from the search's probe at that C where
there is one."""

import numpy as np

from clipprobe import atomic, identity, labels, notes, params
from clipprobe.encode import store
from clipprobe.probe import linear, saved
from clipprobe.stage import FEATURES, PROBE, RESULTS, TUNED, run


def main():
    p = params.load()
    tune = atomic.read_json(RESULTS / "tune.json", "it holds the C to train with; run `dvc repro tune` "
                            "(or `dvc repro`) first")
    C = tune["C"]
    x, y, manifest, val = store.read_train(FEATURES)
    if val is not None:  # the official val split joins train for the final fit
        x, y = np.concatenate([x, val[0]]), np.concatenate([y, val[1]])
    start = saved.load_start(TUNED / "start.npz", saved.classes_of(y))
    clf = linear.fit(x, y, C, max_iter=p.train.max_iter, solver=p.train.solver, start=start,
                     device=p.train.device, memory=p.train.memory)
    n_iter = int(np.max(clf.n_iter_))
    said = notes.emit([n for n in (notes.unconverged("the full-data probe", [n_iter], p.train.max_iter),) if n])
    keys = (*identity.DATA_KEYS, "model", *identity.ENCODER_KEYS)
    per_class = labels.positives(y, len(manifest["classes"]))
    saved.save(clf, PROBE, {**{k: manifest.get(k) for k in keys}, "weights": manifest["weights"],
                            "n_train": len(y), "n_train_per_class_min": int(per_class[per_class > 0].min()),
                            "solver": p.train.solver, "converged": n_iter < p.train.max_iter,
                            "params": tune["params"], "notes": tune.get("notes", []) + said})
    print(f"probe fitted on {len(y)} images with C = {C:.6g} ({n_iter} L-BFGS iterations"
          + (", warm-started from the search)" if start is not None else ")"))


if __name__ == "__main__":
    run(main)
