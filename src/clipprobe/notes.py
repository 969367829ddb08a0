"""Notes on numbers that rest on little data or unfinished fits: printed, recorded, reported.

Each is one line; a stage prints it as `note: ...` and keeps it under `notes` in its record
(results/<stage>.json), which the report shows beside the experiment's numbers.
"""

from __future__ import annotations

import numpy as np

MIN_VAL_PER_CLASS = 5   # below this, a validation split's top-1 moves in steps of 20 points per class


def small_validation(y_val: np.ndarray, classes: list[str]) -> str | None:
    """`C: auto` chose C on fewer than MIN_VAL_PER_CLASS validation images of some class."""
    counts = (y_val == 1).sum(axis=0) if y_val.ndim == 2 else np.bincount(y_val, minlength=len(classes))
    low = int(counts.min()) if len(counts) else 0
    if low >= MIN_VAL_PER_CLASS:
        return None
    worst = classes[int(np.flatnonzero(counts == low)[0])]
    return (f"the C search validated on {len(y_val)} images, {low} of class {worst!r} (fewer than "
            f"{MIN_VAL_PER_CLASS} per class): the chosen C rests on a handful of images; use more data "
            "(data.limit_per_class) or set C")


def unconverged(what: str, n_iters, max_iter: int) -> str | None:
    """Fits of `what` that stopped at train.max_iter (`n_iters`: each fit's L-BFGS iterations)."""
    stopped = sum(int(n) >= max_iter for n in n_iters)
    if not stopped:
        return None
    of = f"{stopped} of {len(n_iters)} fits" if len(n_iters) > 1 else "the fit"
    return (f"{what}: {of} stopped at train.max_iter={max_iter} before converging; raise train.max_iter "
            "(or use train.solver: torch) for the optimum")


def full_data_below_shots(per_class: int, k: int) -> str | None:
    """The full-data probe had fewer images of some class than the largest few-shot k."""
    if per_class >= k:
        return None
    return (f"the full-data probe was trained on as few as {per_class} images of a class, fewer than the "
            f"{k} shots of the largest few-shot probe: 'full data' is not more data here")


def point_interval(what: str, metric: str, m: dict, n_test: int) -> str | None:
    """The bootstrap interval collapsed to the value: every resample scored the same."""
    if m["low"] != m["high"]:
        return None
    return (f"{what}: the 95% interval of {metric} is the single value {m['value']:.2f}: every resample of the "
            f"{n_test} test images scores the same, so the bootstrap cannot say how uncertain it is; read n_test")


def emit(notes: list[str]) -> list[str]:
    """Print each note (as `note: ...`) and return them, for the record."""
    for n in notes:
        print(f"note: {n}")
    return list(notes)
