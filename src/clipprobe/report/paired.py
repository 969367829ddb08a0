"""Paired comparison on one test set: paired bootstrap, exact McNemar, Holm's correction.

The difference of two experiments in a metric, its paired interval and p-value:

- Paired bootstrap (Efron & Tibshirani 1993, ch. 13 and 16; Koehn 2004, "Statistical Significance
  Tests for Machine Translation Evaluation"): both experiments are scored on the same resamples of
  the test images (`intervals.resamples`), and the interval is the percentile interval of the
  differences; its p-value is the two-sided achieved significance level, the share of resampled
  differences on the other side of 0 (doubled).
- Top-1: the exact McNemar test (McNemar 1947; recommended for comparing two classifiers on one
  test set by Dietterich 1998): a two-sided binomial test (scipy.stats.binomtest) of the images
  exactly one of the two gets right.
- Holm's step-down correction (Holm 1979, "A simple sequentially rejective multiple test procedure")
  over the datasets a row is compared on: a difference is marked where its adjusted p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipprobe import intervals, metrics
from clipprobe.errors import ClipprobeError

ALPHA = 0.05


@dataclass(frozen=True)
class Difference:
    """A - B in `metric` (points), its paired 95% interval, the p-value and the test behind it."""
    metric: str
    n_test: int
    diff: float
    low: float
    high: float
    p: float
    test: str
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def same_test_set(a: dict, b: dict, where: str) -> None:
    """Stop unless two predictions files hold the same test images (ids, in order) with the same labels,
    prepared from the same data where both say (`prepared`: ids are positions in a split, so other image
    files under the same names and classes keep them)."""
    if a.get("prepared") and b.get("prepared") and a["prepared"] != b["prepared"]:
        raise ClipprobeError(f"{where}: the two experiments' test sets may differ: their prepared data differ "
                             f"(prepare's output in their dvc.lock: {a['prepared'][:8]} and {b['prepared'][:8]}: "
                             "other images or data params); a paired comparison needs the same test images")
    if len(a["id"]) != len(b["id"]) or not np.array_equal(a["id"], b["id"]):
        raise ClipprobeError(f"{where}: the two experiments' test sets differ ({len(a['id'])} and {len(b['id'])} "
                             "images, other ids); a paired comparison needs the same test images")
    if not np.array_equal(a["label"], b["label"]):
        n = int(np.sum(np.any(np.reshape(a["label"] != b["label"], (len(a["id"]), -1)), axis=1)))
        raise ClipprobeError(f"{where}: the two experiments' test sets differ ({n} images have other labels); "
                             "a paired comparison needs the same test labels")


def _per_image(p: dict, metric: str) -> dict:
    return {"label": p["label"], "scores": p["scores"]} if metric == metrics.MAP11 else \
        intervals.from_predictions(p["label"], p["prediction"])


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of two classifiers' per-image correctness."""
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def difference(a: dict, b: dict, metric: str, where: str) -> Difference:
    """A - B on `metric` from two predictions files (`results.read_predictions`) of one test set."""
    same_test_set(a, b, where)
    da, db = _per_image(a, metric), _per_image(b, metric)
    dist = intervals.distribution(metric, da) - intervals.distribution(metric, db)
    diff = intervals.point(metric, da) - intervals.point(metric, db)
    low, high = intervals.percentile(dist)
    if metric == metrics.TOP1:
        p, test = mcnemar(da["correct"], db["correct"]), "exact McNemar"
    else:
        beyond = np.sum(dist <= 0) if diff > 0 else np.sum(dist >= 0)
        p, test = min(1.0, 2 * (beyond + 1) / (len(dist) + 1)), "paired bootstrap"
    return Difference(metric, len(a["id"]), round(diff, 4), low, high, p, test)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given."""
    order = np.argsort(pvalues, kind="stable")
    m, running, out = len(pvalues), 0.0, [0.0] * len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def against(board, baseline: str, load, only: str | None = None) -> dict:
    """Every row of `board`'s linear-probe and zero-shot tables (the stages that keep per-image
    predictions) against the row of experiment `baseline`, per dataset both have: {(table title,
    row, column): Difference}, p-values Holm-corrected per row and table. `only`: the row of that
    experiment alone. `load(experiment name, stage)` gives an experiment's predictions."""
    from dataclasses import replace

    out = {}
    for t in board.tables:
        base = t.row_of.get(baseline)
        if t.stage not in ("evaluate", "zeroshot") or base is None:
            continue
        for row in t.rows if only is None else [t.row_of[only]] if only in t.row_of else []:
            found = {}
            for c in t.columns:
                if row != base and (row, c) in t.cells and (base, c) in t.cells:
                    a, b = t.cells[row, c].experiment, t.cells[base, c].experiment
                    found[c] = difference(load(a, t.stage), load(b, t.stage), c[1],
                                          f"{t.title} on {c[0]}: {a} against {b}")
            for (c, d), p in zip(found.items(), holm([d.p for d in found.values()])):
                out[t.title, row, c] = replace(d, p_holm=p)
    return out
