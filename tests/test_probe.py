import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from clipprobe import probe
from clipprobe.errors import ClipprobeError


def _blobs(n_per_class, seed, noise=3.0, dim=20, classes=4):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim))
    x = np.concatenate([c + noise * rng.standard_normal((n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


def test_search_follows_clip_protocol_and_finds_known_optimum(monkeypatch):
    """With validation accuracy a known peaked function of log10(C), the search lands on its peak."""
    peak = 0.7

    class FakeFit:
        def __init__(self, C):
            self.C = C

        def predict(self, x):
            acc = max(0.0, 1 - 0.1 * abs(math.log10(self.C) - peak))
            return (np.arange(len(x)) < acc * len(x)).astype(int)

    monkeypatch.setattr(probe, "fit", lambda x, y, C, max_iter: FakeFit(C))
    y_val = np.ones(100_000, int)
    s = probe.search_C(None, None, np.zeros((100_000, 1)), y_val)
    assert abs(math.log10(s.C) - peak) < 2 / 2 ** 8 + 1e-9      # bisection width after 8 steps
    assert all(c in s.curve for c in probe.COARSE_GRID)
    assert s.n_fits == 7 + 2 + 7 - 1   # coarse grid, then 2 per step minus reused points
    assert s.val_top1 == max(s.curve.values())


def test_search_on_real_data_beats_or_equals_the_coarse_grid():
    x, y = _blobs(60, 0)
    tr, val = probe.validation_split(y, 0.3, 0)
    s = probe.search_C(x[tr], y[tr], x[val], y[val], max_iter=200)
    for c in probe.COARSE_GRID:
        acc = np.mean(probe.fit(x[tr], y[tr], c, 200).predict(x[val]) == y[val]) * 100
        assert s.val_top1 >= acc
    assert 1e-6 <= s.C <= 1e6


def test_validation_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(3), 10)
    tr, val = probe.validation_split(y, 0.2, seed=1)
    assert np.bincount(y[val]).tolist() == [2, 2, 2]
    assert np.array_equal(val, probe.validation_split(y, 0.2, seed=1)[1])
    assert set(tr) | set(val) == set(range(30)) and not set(tr) & set(val)


def test_too_few_samples_for_validation():
    y = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(ClipprobeError, match="class 2 has 1 train sample;"):
        probe.validation_split(y, 0.2, 0)


def test_saved_probe_loads_back_as_sklearn_classifier(tmp_path):
    x, y = _blobs(20, 1)
    clf = probe.fit(x, y, 0.5, 1000)
    probe.save(clf, tmp_path, {"classes": list("abcd")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.json", "probe.npz"]
    loaded, info = probe.load(tmp_path)
    assert isinstance(loaded, LogisticRegression) and info["C"] == 0.5
    assert np.allclose(loaded.predict_proba(x), clf.predict_proba(x))
    assert np.array_equal(loaded.predict(x), clf.predict(x))


@pytest.mark.parametrize("key, value", [("arch", "RN50"), ("embed_dim", 1024), ("weights_id", "random(seed=0)"),
                                        ("layer", "pre_projection")])
def test_features_of_another_encoder_are_refused(key, value):
    info = {"arch": "ViT-B-32", "weights_id": "ViT-B-32/openai", "layer": "projection", "embed_dim": 512}
    probe.check_features(info, dict(info), "features/test")
    with pytest.raises(ClipprobeError, match=f"features/test: features have {key}="):
        probe.check_features(info, {**info, key: value}, "features/test")


def test_too_many_classes_for_the_validation_fraction():
    y = np.repeat(np.arange(10), 3)
    with pytest.raises(ClipprobeError, match="10 classes do not fit in 3 validation"):
        probe.validation_split(y, 0.1, 0)
