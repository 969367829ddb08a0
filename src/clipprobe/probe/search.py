"""The CLIP paper's search for C, each C fitted once to the optimum, warm-started.

Appendix A.3: a coarse sweep over 1e-6..1e6, then a binary search in log10 C; the comparisons are
CoOp's lpclip's."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from clipprobe.probe.linear import fit, like, top1

COARSE_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
BISECTION_STEPS = 8


@dataclass
class Search:
    """The C search's result: every C fitted in order, with its validation score (the score
    function's: top-1 by default) and L-BFGS iterations, and the probe fitted at the chosen C
    (the refit's warm start)."""
    C: float
    val_score: float
    probe: LogisticRegression
    fits: list[tuple[float, float, int]] = field(default_factory=list)  # (C, val score, iterations)
    early_exit: bool = False

    @property
    def n_fits(self) -> int:
        return len(self.fits)

    @property
    def curve(self) -> dict[float, float]:
        return {c: acc for c, acc, _ in sorted(self.fits)}


def _peaked(accs: list[float]) -> bool:
    """The coarse curve has clearly peaked: its last two points both fall below its best."""
    return len(accs) >= 3 and max(accs[-2:]) < max(accs[:-2])


def _start(probes: dict[float, LogisticRegression], C: float) -> LogisticRegression | None:
    """A warm start for C: between two fitted Cs the coefficients interpolated linearly in
    log10(C) (the bisection's case: its steps halve, so the guess sharpens as they do);
    outside them the nearest fitted probe."""
    below = [c for c in probes if c < C]
    above = [c for c in probes if c > C]
    if not below or not above:
        return probes[min(probes, key=lambda c: abs(math.log10(c / C)))] if probes else None
    lo, hi = probes[max(below)], probes[min(above)]
    t = math.log(C / lo.C) / math.log(hi.C / lo.C)
    return like(lo, (1 - t) * lo.coef_ + t * hi.coef_, (1 - t) * lo.intercept_ + t * hi.intercept_, C)


def search_C(x_tr, y_tr, x_val, y_val, max_iter: int = 1000, solver: str = "sklearn",
             device: str = "auto", memory: int | str = "auto", score=None, on_fit=None) -> Search:
    """The CLIP paper's search: coarse grid, then 8 bisection steps of log10(C) around the best
    validation `score(probe, x_val, y_val)` (None: `top1`; metrics.scorer gives the dataset's
    headline metric).  `on_fit(C, val score, iterations)` sees each fit as it ends (progress).

    The comparisons are CoOp's lpclip's; what differs is the work.  The coarse grid runs
    from the smallest C up, each fit warm-started from the last, and stops once the curve
    has clearly peaked (two points below the best: the skipped large Cs are the slowest
    fits).  Every C is fitted once, warm-started by `_start`.  The chosen C has the best
    validation score of all fitted; ties go to the smaller C.
    """
    score = score or top1
    probes: dict[float, LogisticRegression] = {}
    fits: list[tuple[float, float, int]] = []
    if solver == "torch" and np.ndim(y_tr) == 1:  # centre and eigendecompose the features once for every C
        from clipprobe.probe import torch_solver
        x_tr, y_tr = torch_solver.Problem(x_tr, y_tr, device, memory), None

    def at(C: float) -> float:
        if C not in probes:
            clf = fit(x_tr, y_tr, C, max_iter, solver, start=_start(probes, C), device=device, memory=memory)
            probes[C] = clf
            fits.append((C, score(clf, x_val, y_val), int(np.max(clf.n_iter_))))
            if on_fit is not None:
                on_fit(*fits[-1])
        return next(acc for c, acc, _ in fits if c == C)

    coarse = []
    for c in sorted(COARSE_GRID):
        coarse.append(at(c))
        if _peaked(coarse):
            break
    early_exit = len(coarse) < len(COARSE_GRID)
    top = len(coarse) - 1 - int(np.argmax(coarse[::-1]))  # lpclip's argmax over 1e6..1e-6: ties -> larger C
    peak = math.log10(sorted(COARSE_GRID)[top])
    lo, hi = peak - 1, peak + 1
    for _ in range(BISECTION_STEPS):
        if at(10 ** lo) < at(10 ** hi):
            lo = (lo + hi) / 2
        else:
            hi = (lo + hi) / 2
    best, acc, _ = max(fits, key=lambda f: (f[1], -f[0]))
    return Search(C=best, val_score=acc, probe=probes[best], fits=fits, early_exit=early_exit)


def progress(metric: str, out=None):
    """An `on_fit` that prints one line per fit as it ends (C, validation score, iterations, time),
    flushed, so a long search shows it is moving."""
    state = {"n": 0, "t": time.perf_counter()}

    def on_fit(C: float, score: float, n_iter: int) -> None:
        now = time.perf_counter()
        state["n"] += 1
        print(f"  fit {state['n']:>2}: C = {C:<9.4g} validation {metric} {score:6.2f}%  {n_iter:>4} iterations "
              f"({now - state['t']:.1f} s)", file=out, flush=True)
        state["t"] = now
    return on_fit
