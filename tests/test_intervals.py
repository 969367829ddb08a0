"""The 95% intervals (a seeded bootstrap over test images) and the paired comparison (paired
bootstrap, exact McNemar, Holm's correction), on synthetic predictions."""

import numpy as np
import pytest
from scipy.stats import binomtest

from clipprobe import intervals, metrics
from clipprobe.errors import ClipprobeError
from clipprobe.report import paired


def _single_label(n=300, k=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    scores = rng.standard_normal((n, k))
    scores[np.arange(n), y] += 1.2
    return y, scores


def _multi_label(n=200, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.int8)
    y[rng.random((n, k)) < 0.05] = -1                       # difficult: neither hit nor miss
    return y, rng.standard_normal((n, k)) + 1.0 * (y == 1)


def test_each_resample_scores_as_the_metric_function_does_on_the_resampled_images():
    y, scores = _single_label()
    classes = np.arange(scores.shape[1])
    data = intervals.per_image(y, scores, classes)
    got = intervals.distributions(["top1", "top5", "mean_per_class_recall"], data, n_resamples=40)
    idx = np.concatenate(list(intervals.resamples(len(y), 40)))
    from sklearn.metrics import top_k_accuracy_score
    for b, rows in enumerate(idx):
        for name in ("top1", "mean_per_class_recall"):        # the headline functions, unrounded
            assert got[name][b] == pytest.approx(metrics.FUNCTIONS[name][0](y[rows], scores[rows], classes), abs=1e-9)
        assert got["top5"][b] == pytest.approx(top_k_accuracy_score(y[rows], scores[rows], k=5, labels=classes)
                                               * 100, abs=1e-9)


def test_top5_resamples_rank_tied_scores_as_the_point_value_does():
    """Saturated probes give tied scores (probabilities that underflow to 0): each resample ranks the
    ties as scikit-learn's top_k_accuracy_score (the point value) does, so the interval holds the value."""
    y, scores = _single_label(k=20)
    tied = np.where(scores < 1.0, 0.0, scores)           # most classes tie at 0, the true one often among them
    classes = np.arange(20)
    from sklearn.metrics import top_k_accuracy_score
    data = intervals.per_image(y, tied, classes)
    got = intervals.distribution("top5", data, n_resamples=40)
    for b, rows in enumerate(np.concatenate(list(intervals.resamples(len(y), 40)))):
        assert got[b] == pytest.approx(top_k_accuracy_score(y[rows], tied[rows], k=5, labels=classes) * 100, abs=1e-9)
    m = intervals.metrics_with_intervals(y, tied, classes, "top1")["top5"]
    assert m["low"] <= m["value"] <= m["high"]


def test_each_resample_of_a_multi_label_set_scores_vocs_11_point_map():
    y, scores = _multi_label()
    data = intervals.per_image(y, scores, np.arange(y.shape[1]))
    got = intervals.distribution("map11", data, n_resamples=30)
    for b, rows in enumerate(np.concatenate(list(intervals.resamples(len(y), 30)))):
        assert got[b] == pytest.approx(metrics.map11(y[rows], scores[rows]), abs=1e-9)
    assert intervals.point("map11", data) == pytest.approx(metrics.map11(y, scores), abs=1e-9)


def test_the_interval_of_top1_is_as_wide_as_a_proportions_and_holds_the_value():
    rng = np.random.default_rng(3)
    for n in (400, 10_000):
        correct = rng.random(n) < 0.8
        data = {"label": np.zeros(n, int), "correct": correct}
        low, high = intervals.percentile(intervals.distribution("top1", data))
        p = correct.mean()
        normal = 2 * 1.96 * np.sqrt(p * (1 - p) / n) * 100       # the textbook interval's width
        assert low < p * 100 < high and high - low == pytest.approx(normal, rel=0.15)


def test_resamples_are_seeded_and_the_same_for_every_experiment_on_one_test_set():
    a = np.concatenate(list(intervals.resamples(5000)))
    assert a.shape == (1000, 5000) and np.array_equal(a, np.concatenate(list(intervals.resamples(5000))))
    assert not np.array_equal(a, np.concatenate(list(intervals.resamples(5000, seed=1))))


def test_metrics_with_intervals_give_every_metric_its_value_and_interval():
    y, scores = _single_label()
    out = intervals.metrics_with_intervals(y, scores, np.arange(12), "top1")
    point = metrics.metrics(y, scores, np.arange(12))
    assert set(out) == {"top1", "top5", "mean_per_class_recall"}
    for name, m in out.items():
        assert m["value"] == point[name] and m["low"] < m["value"] < m["high"]


def _predictions(correct, labels=None, ids=None):
    labels = np.zeros(len(correct), np.int64) if labels is None else labels
    return {"id": np.arange(len(correct)) if ids is None else ids, "label": labels,
            "prediction": np.where(correct, labels, labels + 1)}


def test_mcnemar_is_the_exact_binomial_test_of_the_images_only_one_gets_right():
    a = np.array([True] * 10 + [False] * 3 + [True] * 20)
    b = np.array([False] * 10 + [True] * 3 + [True] * 20)
    assert paired.mcnemar(a, b) == pytest.approx(binomtest(10, 13, 0.5).pvalue)
    assert paired.mcnemar(a, a) == 1.0
    assert paired.mcnemar(np.ones(10, bool), np.zeros(10, bool)) == pytest.approx(2 * 0.5 ** 10)


def test_paired_difference_of_top1_uses_mcnemar_and_a_paired_interval_narrower_than_unpaired():
    rng = np.random.default_rng(0)
    base = rng.random(2000) < 0.7
    better = base.copy()
    better[np.flatnonzero(~base)[:60]] = True                   # right on 60 more images, wrong on none more
    d = paired.difference(_predictions(better), _predictions(base), "top1", "here")
    assert d.diff == pytest.approx(3.0) and d.test == "exact McNemar"
    assert d.p == pytest.approx(2 * 0.5 ** 60) and 0 < d.low < 3.0 < d.high
    unpaired = [intervals.percentile(intervals.distribution("top1", {"label": np.zeros(2000), "correct": c}))
                for c in (better, base)]
    assert d.high - d.low < 0.5 * min(h - lo for lo, h in unpaired)   # pairing removes the shared variance


def test_paired_difference_of_other_metrics_uses_the_paired_bootstrap():
    y, scores = _single_label(n=500)
    a = {"id": np.arange(500), "label": y, "prediction": scores.argmax(1)}
    b = {**a, "prediction": np.where(np.arange(500) < 250, y, scores.argmax(1))}    # right on the first half
    d = paired.difference(b, a, "mean_per_class_recall", "here")
    assert d.test == "paired bootstrap" and d.diff > 0 and d.low > 0 and d.p < 0.01
    same = paired.difference(a, a, "mean_per_class_recall", "here")
    assert (same.diff, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)


def test_experiments_on_other_test_sets_are_refused_in_one_line():
    a = _predictions(np.ones(5, bool))
    with pytest.raises(ClipprobeError, match=r"^cifar10: the two experiments' test sets differ \(5 and 4 images"):
        paired.difference(a, _predictions(np.ones(4, bool)), "top1", "cifar10")
    with pytest.raises(ClipprobeError, match=r"test sets differ \(2 images have other labels\)"):
        paired.difference(a, _predictions(np.ones(5, bool), labels=np.array([0, 0, 0, 1, 1])), "top1", "cifar10")
    with pytest.raises(ClipprobeError, match="other ids"):
        paired.difference(a, _predictions(np.ones(5, bool), ids=np.arange(1, 6)), "top1", "cifar10")


def test_the_same_ids_and_labels_from_other_prepared_data_are_refused():
    """Ids are positions in a split: other image files under the same names and classes keep ids and
    labels; the hash of prepare's output (each experiment's dvc.lock) tells them apart."""
    a = {**_predictions(np.ones(5, bool)), "prepared": "5563b733f280408e.dir"}
    assert paired.difference(a, {**a}, "top1", "cifar10").diff == 0.0
    with pytest.raises(ClipprobeError, match=r"^cifar10: the two experiments' test sets may differ: their "
                                             r"prepared data differ \(prepare's output in their dvc.lock: "
                                             r"5563b733 and 1adb0e05"):
        paired.difference(a, {**a, "prepared": "1adb0e05d56a6995.dir"}, "top1", "cifar10")


def test_holm_adjusts_each_p_by_its_rank_and_keeps_them_monotone():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert paired.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paired.holm([0.9]) == [0.9] and paired.holm([]) == []
