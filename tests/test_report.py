import numpy as np

from clipprobe import report


def test_metrics():
    classes = np.arange(6)
    y = np.array([0, 1, 2, 3, 4, 5, 0, 0])
    scores = np.eye(6)[[0, 1, 2, 3, 4, 0, 1, 0]]        # 6 of 8 right; class 5 never right
    scores[5, 5] = scores[6, 0] = 0.5                      # ...but in their top-5
    m = report.metrics(y, scores, classes)
    assert m["top1"] == 75.0
    assert m["top5"] == 100.0
    # recalls: class0 2/3, classes 1-4 1, class5 0 -> mean 4.6667/6
    assert abs(m["mean_per_class_recall"] - (2 / 3 + 4) / 6 * 100) < 1e-3


def test_no_top5_with_few_classes():
    m = report.metrics(np.array([0, 1]), np.array([[1.0, 0], [0, 1.0]]), np.arange(2))
    assert "top5" not in m and m["top1"] == 100.0
