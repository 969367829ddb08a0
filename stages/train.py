"""train: the logistic-regression probe on all training features with the tuned C -> probe/,
starting L-BFGS from the search's probe at that C where there is one."""

import json

import numpy as np

from clipprobe import params, probe, store
from clipprobe.errors import ClipprobeError
from clipprobe.stage import FEATURES, METRICS, PROBE, TUNED, run


def main():
    p = params.load()
    tuned = METRICS / "tune.json"
    if not tuned.is_file():
        raise ClipprobeError(f"{tuned} is missing: it holds the C to train with; run `dvc repro tune` "
                             "(or `dvc repro`) first")
    C = json.loads(tuned.read_text())["C"]
    x, y, _, manifest = store.read_features(FEATURES / "train")
    if (FEATURES / "val").is_dir():  # the official val split joins train for the final fit
        x_val, y_val, _, _ = store.read_features(FEATURES / "val")
        x, y = np.concatenate([x, x_val]), np.concatenate([y, y_val])
    start = probe.load_start(TUNED / "start.npz", probe.classes_of(y))
    clf = probe.fit(x, y, C, max_iter=p.train.max_iter, solver=p.train.solver, start=start,
                    device=p.train.device, memory=p.train.memory)
    keys = ("dataset", "classes", "model", "arch", "weights", "weights_id", "layer", "embed_dim")
    probe.save(clf, PROBE, {**{k: manifest[k] for k in keys}, "n_train": len(y), "solver": p.train.solver})
    print(f"probe fitted on {len(y)} images with C = {C:.6g} ({int(np.max(clf.n_iter_))} L-BFGS iterations"
          + (", warm-started from the search)" if start is not None else ")"))


if __name__ == "__main__":
    run(main)
