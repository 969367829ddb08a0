"""Benchmark: the CLIP-paper C search + refit as open reimplementations run it, against clipprobe's.

    python bench/probe.py                      # small set, both protocols once, then the time ratio
    python bench/probe.py --runs 3             # each protocol 3 times, alternating; medians
    python bench/probe.py --set large          # 48,000 train / 12,000 val / 10,000 test
    python bench/probe.py --solver sklearn     # clipprobe's search with scikit-learn's own L-BFGS
    python bench/probe.py --converged-peer     # + the peer's loop on converged fits
    python bench/probe.py --sweep              # converged val/test top-1 over C = 1..1000

The peer is CoOp's lpclip (the loop most CLIP linear-probe numbers come from): scikit-learn
`LogisticRegression(solver="lbfgs", max_iter=1000)` fitted from scratch for each C of the grid
1e6..1e-6, then 8 bisection steps in log10(C) around the best, 2 fits per step, its C the last
step's winner, then a refit on train+val: 24 cold fits.  clipprobe runs its library code, what
the tune and train stages call: `search.search_C`, then `linear.fit` on train+val warm-started
from the search.  Both see the same features, validation split (20%, seed 0) and test set.
Last, the targets' figures: the time ratio, the test top-1 difference, and the validation top-1
at each protocol's C (and clipprobe's solver's at the peer's C: whether the search missed a better C).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import benchsets
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from clipprobe.params import TrainParams
from clipprobe.probe import linear, search, validation

CACHE = Path(__file__).resolve().parent / ".cache"


def _top1(clf, x, y) -> float:
    return float(np.mean(clf.predict(x) == y) * 100)


def peer(x_tr, y_tr, x_val, y_val, x_all, y_all, converged=False):
    """CoOp lpclip's search, as written there (no fit reused), and its refit.  `converged`: the
    same loop with every fit (cold) run to the optimum by clipprobe's torch solver instead, to
    tell what the protocol picks from what scikit-learn's fits stopped at max_iter pick."""
    def fit(c, x=x_tr, y=y_tr):
        if converged:
            return linear.fit(x, y, c, 5000, solver="torch", device="cpu")
        return LogisticRegression(solver="lbfgs", max_iter=1000, C=c).fit(x, y)

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
    clf = fit(c_final, x_all, y_all)
    return clf, c_final, acc_final, len(grid) + 2 * 8 + 1


def clipprobe_search(x_tr, y_tr, x_val, y_val, x_all, y_all, solver="sklearn"):
    s = search.search_C(x_tr, y_tr, x_val, y_val, max_iter=1000, solver=solver)
    clf = linear.fit(x_all, y_all, s.C, 1000, solver=solver, start=s.probe)
    return clf, s.C, s.val_score, s.n_fits + 1


def sweep(x_tr, y_tr, x_val, y_val, x_all, y_all, x_te, y_te):
    """Converged fits (torch solver) at log10(C) = 0, 1/8, ..., 3: validation top-1 of the fit on
    train, test top-1 of the refit on train+val; how much the curve the searches climb is noise."""
    from clipprobe.probe import torch_solver
    print(f"{'C':>10}{'val top-1':>11}{'test top-1 (refit)':>20}")
    p_tr, p_all = torch_solver.Problem(x_tr, y_tr, "cpu"), torch_solver.Problem(x_all, y_all, "cpu")
    clf_tr = clf_all = None
    for k in range(25):
        c = 10 ** (k / 8)
        clf_tr = torch_solver.fit(p_tr, None, c, 5000, start=clf_tr)
        clf_all = torch_solver.fit(p_all, None, c, 5000, start=clf_all)
        print(f"{c:>10.4g}{_top1(clf_tr, x_val, y_val):>11.2f}{_top1(clf_all, x_te, y_te):>20.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=tuple(benchsets.SETS), default="small")
    ap.add_argument("--runs", type=int, default=1, help="runs of each protocol, alternating; medians")
    ap.add_argument("--only", choices=("peer", "clipprobe"), help="run one protocol (to time it alone)")
    ap.add_argument("--solver", choices=("torch", "sklearn"), default=TrainParams.solver,
                    help="clipprobe's train.solver (default: the params default)")
    ap.add_argument("--converged-peer", action="store_true",
                    help="also run the peer's loop with converged fits (torch solver, cold, max_iter 5000)")
    ap.add_argument("--sweep", action="store_true", help="only print converged val/test top-1 for C = 1..1000")
    a = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # both protocols stop at max_iter alike

    x_all, y_all, x_te, y_te = benchsets.load(a.set, CACHE)
    tr, val = validation.validation_split(y_all, 0.2, 0)
    data = (x_all[tr], y_all[tr], x_all[val], y_all[val], x_all, y_all)
    print(f"{a.set} set: {len(tr)} train / {len(val)} val (refit on all {len(y_all)}) / {len(y_te)} test, "
          f"{x_all.shape[1]}-d float32, {len(np.unique(y_all))} classes; torch threads {torch.get_num_threads()}")
    if a.sweep:
        return sweep(*data, x_te, y_te)
    ours = f"clipprobe ({a.solver})"
    protocols = {"peer (lpclip)": lambda: peer(*data), ours: lambda: clipprobe_search(*data, solver=a.solver)}
    if a.converged_peer:
        protocols["peer, converged fits"] = lambda: peer(*data, converged=True)
    if a.only:
        protocols = {k: v for k, v in protocols.items() if k.startswith(a.only)}
    walls, last = {name: [] for name in protocols}, {}
    print(f"{'protocol':<22}{'C':>12}{'val top-1':>11}{'test top-1':>12}{'fits':>6}{'wall s':>9}")
    for run in range(a.runs):
        for name, protocol in protocols.items():
            t = time.perf_counter()
            clf, C, val_top1, n_fits = protocol()
            walls[name].append(time.perf_counter() - t)
            last[name] = (C, val_top1, _top1(clf, x_te, y_te))
            print(f"{name:<22}{C:>12.5g}{val_top1:>11.2f}{last[name][2]:>12.2f}{n_fits:>6}"
                  f"{walls[name][-1]:>9.2f}", flush=True)
    medians = {name: statistics.median(w) for name, w in walls.items()}
    print("median wall s: " + ", ".join(f"{n} {m:.2f}" for n, m in medians.items()))
    if a.only is None:
        (c_peer, val_peer, test_peer), (c_ours, val_ours, test_ours) = last["peer (lpclip)"], last[ours]
        at_peer_c = _top1(linear.fit(*data[:2], c_peer, 1000, solver=a.solver), *data[2:4])
        print(f"time ratio peer / clipprobe: {medians['peer (lpclip)'] / medians[ours]:.1f}x")
        print(f"test top-1 clipprobe - peer: {test_ours - test_peer:+.2f} points")
        print(f"val top-1 at the chosen C: clipprobe {val_ours:.2f} at C = {c_ours:.5g}; peer {val_peer:.2f} "
              f"(its own fit) at C = {c_peer:.5g}, where clipprobe's solver scores {at_peer_c:.2f}")


if __name__ == "__main__":
    main()
