import numpy as np
import pytest

from clipprobe import metrics


def test_metrics():
    classes = np.arange(6)
    y = np.array([0, 1, 2, 3, 4, 5, 0, 0])
    scores = np.eye(6)[[0, 1, 2, 3, 4, 0, 1, 0]]        # 6 of 8 right; class 5 never right
    scores[5, 5] = scores[6, 0] = 0.5                      # ...but in their top-5
    m = metrics.metrics(y, scores, classes)
    assert m["top1"] == 75.0
    assert m["top5"] == 100.0
    # recalls: class0 2/3, classes 1-4 1, class5 0 -> mean 4.6667/6
    assert abs(m["mean_per_class_recall"] - (2 / 3 + 4) / 6 * 100) < 1e-3


def test_no_top5_with_few_classes():
    m = metrics.metrics(np.array([0, 1]), np.array([[1.0, 0], [0, 1.0]]), np.arange(2))
    assert "top5" not in m and m["top1"] == 100.0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_class_absent_from_test_is_left_out_of_the_recall_as_balanced_accuracy_does():
    from sklearn.metrics import balanced_accuracy_score
    names = ["cat", "dog", "owl"]
    y = np.array([0, 0, 1, 1])                                 # no owl in test
    scores = np.eye(3)[[0, 0, 1, 2]]                           # the last dog called an owl
    m = metrics.metrics(y, scores, np.arange(3))
    pred = scores.argmax(axis=1)
    assert m["mean_per_class_recall"] == 75.0 == round(balanced_accuracy_score(y, pred) * 100, 4)
    assert metrics.per_class_accuracy(y, pred, names) == [("cat", 100.0), ("dog", 50.0)]
    assert metrics.absent_classes(y, names) == ["owl"]
    perfect = metrics.metrics(y, np.eye(3)[[0, 0, 1, 1]], np.arange(3))
    assert perfect["mean_per_class_recall"] == 100.0          # was 66.67: owl counted as 0 % recall


def test_metrics_name_the_headline_metric_and_its_score():
    y = np.array([0, 0, 0, 1])
    scores = np.eye(2)[[0, 0, 0, 0]]                      # top-1 75%, class 1 never right
    m = metrics.metrics(y, scores, np.arange(2), "mean_per_class_recall")
    assert (m["metric"], m["score"], m["top1"]) == ("mean_per_class_recall", 50.0, 75.0)
    assert metrics.metrics(y, scores, np.arange(2))["metric"] == "top1"


def test_11_point_ap_is_vocs_and_ignores_difficult_images():
    assert metrics.average_precision_11(np.array([1, 1, 0, 0]), np.array([4.0, 3, 2, 1])) == 1.0
    # ranks: hit, miss, hit -> precision 1 up to recall 0.5, then 2/3 up to recall 1
    ap = metrics.average_precision_11(np.array([1, 0, 1]), np.array([3.0, 2, 1]))
    assert abs(ap - (6 * 1 + 5 * 2 / 3) / 11) < 1e-12
    # a difficult image (-1) ranked first is neither a hit nor a miss
    assert metrics.average_precision_11(np.array([-1, 1, 0]), np.array([3.0, 2, 1])) == 1.0
    y = np.array([[1, 0], [0, 1]])
    assert metrics.metrics(y, np.array([[2.0, 0], [0, 2.0]]), np.arange(2), "map11") == \
        {"metric": "map11", "score": 100.0, "map11": 100.0}
