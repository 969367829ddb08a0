"""95% intervals of the test metrics: a seeded bootstrap over test images, vectorised.

The percentile interval of 1,000 bootstrap resamples of the test images (Efron & Tibshirani, *An
Introduction to the Bootstrap*, 1993, ch. 13): each resample draws n images with replacement and
scores the metric on them.  The draws depend only on n and a fixed seed, so two experiments on the
same test set are resampled identically: `report/paired` takes differences over the same draws.

A metric is scored from what it needs per image (`per_image`): whether each image's top-1 (top-5)
guess is right, and its label for mean per-class recall; the labels and scores of every class for
the 11-point mAP.  Resamples are drawn in blocks of at most ~4M indices (32 MB), so memory stays
bounded at any test-set size.
"""

from __future__ import annotations

import numpy as np

from clipprobe import metrics

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_BLOCK = 2 ** 22   # indices per block of resamples


def resamples(n: int, n_resamples: int = RESAMPLES, seed: int = SEED):
    """Blocks of bootstrap resamples, each [b, n] indices into the n test images; the same for
    the same n (the block size depends on n only)."""
    rng = np.random.default_rng(seed)
    per_block = max(1, min(n_resamples, _BLOCK // max(n, 1)))
    done = 0
    while done < n_resamples:
        b = min(per_block, n_resamples - done)
        yield rng.integers(0, n, size=(b, n), dtype=np.int64 if n >= 2 ** 31 else np.int32)
        done += b


def per_image(y: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict:
    """What each metric needs per image: `correct` (top-1 right), `correct5`, `label`
    (single-label); `label` and `scores` [n, classes] (multi-label)."""
    if y.ndim == 2:
        return {"label": y, "scores": scores}
    pred = classes[np.argmax(scores, axis=1)]
    out = {"label": y, "correct": pred == y}
    if len(classes) > 5:   # in the top 5: fewer than 5 classes rank above the true one
        col = np.searchsorted(classes, y)
        true = scores[np.arange(len(y)), col][:, None]
        # ties ranked as scikit-learn's top_k_accuracy_score ranks them (the point value): the later class first
        later = np.arange(scores.shape[1])[None, :] > col[:, None]
        out["correct5"] = ((scores > true) | ((scores == true) & later)).sum(axis=1) < 5
    return out


def from_predictions(y: np.ndarray, pred: np.ndarray) -> dict:
    """`per_image` of a single-label experiment from its stored predictions (no top-5)."""
    return {"label": y, "correct": pred == y}


def _mean_recall(label: np.ndarray, correct: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean per-class recall of each resample, over the classes it holds (as the point estimate)."""
    b, n = idx.shape
    k = int(label.max()) + 1 if len(label) else 1
    if correct.dtype == bool:   # one count of (resample, class, right or not) cells
        cells = (np.arange(b, dtype=np.int64)[:, None] * (2 * k) + 2 * label[idx] + correct[idx]).ravel()
        both = np.bincount(cells, minlength=2 * b * k).reshape(b, k, 2)
        count, hits = both.sum(axis=2), both[..., 1]
    else:                       # a mean over seeds: weighted counts
        cells = (np.arange(b, dtype=np.int64)[:, None] * k + label[idx]).ravel()
        count = np.bincount(cells, minlength=b * k).reshape(b, k)
        hits = np.bincount(cells, weights=correct[idx].ravel(), minlength=b * k).reshape(b, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(count > 0, hits / count, np.nan), axis=1)


def _map11(label: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """11-point mAP of each resample: each image weighted by how often the resample drew it, in each
    class's score order (VOC's rule: difficult images neither hit nor miss). Precision is evaluated at
    the positive images only: between two of them recall stays and precision falls, so the best
    precision at a recall level is always at a positive image."""
    b, n = idx.shape
    weights = np.bincount((np.arange(b, dtype=np.int64)[:, None] * n + idx).ravel(),
                          minlength=b * n).reshape(b, n).astype(np.float64)
    aps = np.zeros((b, label.shape[1]))
    for c in range(label.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        ranked = label[order, c]
        pos, neg = np.flatnonzero(ranked == 1), np.flatnonzero(ranked == 0)
        if not len(pos):
            continue
        hit = np.cumsum(weights[:, order[pos]], axis=1)
        before = np.searchsorted(neg, pos)            # negatives ranked above each positive
        false_alarm = np.concatenate([np.zeros((b, 1)), np.cumsum(weights[:, order[neg]], axis=1)], axis=1)[:, before]
        n_pos = hit[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(n_pos > 0, hit / n_pos, 0.0)
            precision = np.where(hit > 0, hit / (hit + false_alarm), 0.0)
        best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        ap = np.zeros(b)
        for t in np.linspace(0, 1, 11):
            first = (recall < t).sum(axis=1)          # recall is non-decreasing; as average_precision_11 compares
            inside = first < len(pos)
            ap[inside] += best_after[np.flatnonzero(inside), first[inside]]
        aps[:, c] = ap / 11
    return aps.mean(axis=1)


def _statistic(metric: str, data: dict, idx: np.ndarray) -> np.ndarray:
    if metric == metrics.TOP1:
        return data["correct"][idx].mean(axis=1)
    if metric == "top5":
        return data["correct5"][idx].mean(axis=1)
    if metric == metrics.MEAN_PER_CLASS:
        return _mean_recall(data["label"], data["correct"], idx)
    if metric == metrics.MAP11:
        return _map11(data["label"], data["scores"], idx)
    raise KeyError(metric)


def distributions(names, data: dict, n_resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, np.ndarray]:
    """Each metric of `names` (in percent) on each bootstrap resample of the test images, all from
    the same resamples: {name: [n_resamples]}."""
    n = len(data["label"])
    blocks = {m: [] for m in names}
    for idx in resamples(n, n_resamples, seed):
        for m in names:
            blocks[m].append(_statistic(m, data, idx))
    return {m: np.concatenate(v) * 100 for m, v in blocks.items()}


def distribution(metric: str, data: dict, n_resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`metric` (in percent) on each bootstrap resample of the test images, [n_resamples]."""
    return distributions([metric], data, n_resamples, seed)[metric]


def percentile(dist: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of a bootstrap distribution, rounded as the metrics are."""
    lo, hi = np.percentile(dist, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return round(float(lo), 4), round(float(hi), 4)


def scored(data: dict, names) -> dict:
    """{metric: {"value", "low", "high"}} for each of `names`: the point value from the full
    test set (the caller's), the interval from the bootstrap."""
    return {m: dict(zip(("low", "high"), percentile(d))) for m, d in distributions(names, data).items()}


def metrics_with_intervals(y: np.ndarray, scores: np.ndarray, classes: np.ndarray, metric: str) -> dict:
    """Every metric `metrics.metrics` scores, with its 95% interval: {name: {"value", "low", "high"}}."""
    point = metrics.metrics(y, scores, classes, metric)
    names = [k for k in point if k not in ("metric", "score")]
    ci = scored(per_image(y, scores, classes), names)
    return {m: {"value": point[m], **ci[m]} for m in names}


# what a record says about how its intervals were made
METHOD = {"method": "percentile bootstrap over test images", "resamples": RESAMPLES, "seed": SEED, "level": LEVEL}


def point(metric: str, data: dict) -> float:
    """`metric` (in percent) on the full test set, from the same per-image data as its resamples."""
    n = len(data["label"])
    return float(_statistic(metric, data, np.arange(n)[None, :])[0]) * 100
