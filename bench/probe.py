"""Benchmark: the CLIP-paper C search + refit as open reimplementations run it, against clipprobe's.

    python bench/probe.py                      # small set, both protocols once, then the time ratio
    python bench/probe.py --runs 3             # each protocol 3 times, alternating; medians
    python bench/probe.py --set large --solver torch

The peer is CoOp's lpclip (the loop most CLIP linear-probe numbers come from): scikit-learn
`LogisticRegression(solver="lbfgs", max_iter=1000)` fitted from scratch for each C of the grid
1e6..1e-6, then 8 bisection steps in log10(C) around the best, 2 fits per step, its C the last
step's winner, then a refit on train+val: 24 cold fits.  clipprobe runs its library code, what
the tune and train stages call: `probe.search_C`, then `probe.fit` on train+val warm-started
from the search.  Both see the same features, validation split (20%, seed 0) and test set.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import features
from clipprobe import probe


def _top1(clf, x, y) -> float:
    return float(np.mean(clf.predict(x) == y) * 100)


def peer(x_tr, y_tr, x_val, y_val, x_all, y_all):
    """CoOp lpclip's search, as written there (no fit reused), and its refit."""
    def fit(c):
        return LogisticRegression(solver="lbfgs", max_iter=1000, C=c).fit(x_tr, y_tr)

    grid = [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]
    accs = [_top1(fit(c), x_val, y_val) for c in grid]
    c_peak = grid[int(np.argmax(accs))]
    c_left, c_right = 1e-1 * c_peak, 1e1 * c_peak
    for _ in range(8):
        acc_left, acc_right = _top1(fit(c_left), x_val, y_val), _top1(fit(c_right), x_val, y_val)
        if acc_left < acc_right:
            c_final, acc_final = c_right, acc_right
            c_left, c_right = 10 ** (0.5 * (np.log10(c_right) + np.log10(c_left))), c_right
        else:
            c_final, acc_final = c_left, acc_left
            c_left, c_right = c_left, 10 ** (0.5 * (np.log10(c_right) + np.log10(c_left)))
    clf = LogisticRegression(solver="lbfgs", max_iter=1000, C=c_final).fit(x_all, y_all)
    return clf, c_final, acc_final, len(grid) + 2 * 8 + 1


def clipprobe(x_tr, y_tr, x_val, y_val, x_all, y_all, solver="sklearn"):
    s = probe.search_C(x_tr, y_tr, x_val, y_val, max_iter=1000, solver=solver)
    clf = probe.fit(x_all, y_all, s.C, 1000, solver=solver, start=s.probe)
    return clf, s.C, s.val_top1, s.n_fits + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("small", "large"), default="small")
    ap.add_argument("--runs", type=int, default=1, help="runs of each protocol, alternating; medians")
    ap.add_argument("--only", choices=("peer", "clipprobe"), help="run one protocol (to time it alone)")
    ap.add_argument("--solver", choices=("sklearn", "torch"), default="sklearn", help="clipprobe's solver")
    a = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # both protocols stop at max_iter alike

    x_all, y_all, x_te, y_te = features.load(a.set)
    tr, val = probe.validation_split(y_all, 0.2, 0)
    data = (x_all[tr], y_all[tr], x_all[val], y_all[val], x_all, y_all)
    print(f"{a.set} set: {len(tr)} train / {len(val)} val (refit on all {len(y_all)}) / {len(y_te)} test, "
          f"{x_all.shape[1]}-d float32, {len(np.unique(y_all))} classes")
    protocols = {"peer (lpclip)": lambda: peer(*data),
                 f"clipprobe ({a.solver})": lambda: clipprobe(*data, solver=a.solver)}
    if a.only:
        protocols = {k: v for k, v in protocols.items() if k.startswith(a.only)}
    walls = {name: [] for name in protocols}
    print(f"{'protocol':<22}{'C':>12}{'val top-1':>11}{'test top-1':>12}{'fits':>6}{'wall s':>9}")
    for run in range(a.runs):
        for name, protocol in protocols.items():
            t = time.perf_counter()
            clf, C, val_top1, n_fits = protocol()
            walls[name].append(time.perf_counter() - t)
            print(f"{name:<22}{C:>12.5g}{val_top1:>11.2f}{_top1(clf, x_te, y_te):>12.2f}{n_fits:>6}"
                  f"{walls[name][-1]:>9.2f}", flush=True)
    medians = {name: statistics.median(w) for name, w in walls.items()}
    print("median wall s: " + ", ".join(f"{n} {m:.2f}" for n, m in medians.items()))
    if len(medians) == 2:
        (_, slow), (_, fast) = medians.items()
        print(f"time ratio peer / clipprobe: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
