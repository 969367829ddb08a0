import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from clipprobe import identity
from clipprobe.errors import ClipprobeError
from clipprobe.probe import linear, logreg, saved, search, validation


def _blobs(n_per_class, seed, noise=3.0, dim=20, classes=4):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim))
    x = np.concatenate([c + noise * rng.standard_normal((n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


class FakeFit:
    """Validation accuracy a known peaked function of log10(C); remembers its warm start.
    Its coefficients are log10(C), so an interpolated start's show where it was aimed."""
    def __init__(self, C, peak, start):
        self.C, self.peak, self.start, self.n_iter_ = C, peak, start, np.array([1])
        self.coef_, self.intercept_, self.classes_ = np.full((1, 1), math.log10(C)), np.zeros(1), np.arange(2)

    def predict(self, x):
        acc = max(0.0, 1 - 0.1 * abs(math.log10(self.C) - self.peak))
        return (np.arange(len(x)) < acc * len(x)).astype(int)


def _fake_search(monkeypatch, peak):
    fitted = []

    def fake_fit(x, y, C, max_iter, solver, start, device, memory):
        fitted.append(FakeFit(C, peak, start))
        return fitted[-1]

    monkeypatch.setattr(search, "fit", fake_fit)
    y_val = np.ones(100_000, int)
    accuracy = lambda clf, x, y: float(np.mean(clf.predict(x) == y) * 100)  # the fake's curve  # noqa: E731
    return search.search_C(None, None, np.zeros((100_000, 1)), y_val, score=accuracy), fitted


def test_search_follows_clip_protocol_and_finds_known_optimum(monkeypatch):
    """With validation accuracy peaked at log10(C) = 0.7, the search lands on the peak and
    skips the coarse points past it that cannot win."""
    s, fitted = _fake_search(monkeypatch, 0.7)
    assert abs(math.log10(s.C) - 0.7) < 2 / 2 ** 8 + 1e-9      # bisection width after 8 steps
    assert [f.C for f in fitted[:6]] == [1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4]  # from the smallest C up
    assert 1e6 not in s.curve and s.early_exit                   # 1e2 and 1e4 fell below 1.0: stop
    assert s.n_fits == len(fitted) == 6 + 2 + 7 - 1   # coarse grid, then 2 per step minus reused points
    assert s.val_score == max(s.curve.values()) and s.probe.C == s.C
    assert fitted[0].start is None
    for i, f in enumerate(fitted[1:], 1):
        before = [g.C for g in fitted[:i]]
        if min(before) < f.C < max(before):  # between fitted Cs: interpolated in log10(C)
            assert f.start.coef_[0, 0] == pytest.approx(math.log10(f.C)) and f.start.C == f.C
        else:  # the coarse grid going up: the fitted C nearest in log10(C)
            assert f.start is fitted[i - 1] and f.C > max(before)


def test_search_with_peak_at_the_top_fits_the_whole_grid(monkeypatch):
    s, _ = _fake_search(monkeypatch, 5.3)
    assert all(c in s.curve for c in search.COARSE_GRID) and not s.early_exit
    assert abs(math.log10(s.C) - 5.3) < 2 / 2 ** 8 + 1e-9


def test_search_on_real_data_beats_or_equals_the_coarse_grid():
    x, y = _blobs(60, 0)
    tr, val = validation.validation_split(y, 0.3, 0)
    s = search.search_C(x[tr], y[tr], x[val], y[val], max_iter=200)
    for c in search.COARSE_GRID:
        acc = np.mean(linear.fit(x[tr], y[tr], c, 200).predict(x[val]) == y[val]) * 100
        assert s.val_score >= acc
    assert 1e-6 <= s.C <= 1e6


def test_validation_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(3), 10)
    tr, val = validation.validation_split(y, 0.2, seed=1)
    assert np.bincount(y[val]).tolist() == [2, 2, 2]
    assert np.array_equal(val, validation.validation_split(y, 0.2, seed=1)[1])
    assert set(tr) | set(val) == set(range(30)) and not set(tr) & set(val)


def test_too_few_samples_for_validation():
    y = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(ClipprobeError, match="class 2 has 1 train sample;"):
        validation.validation_split(y, 0.2, 0)


def test_saved_probe_loads_back_as_sklearn_classifier(tmp_path):
    x, y = _blobs(20, 1)
    clf = linear.fit(x, y, 0.5, 1000)
    saved.save(clf, tmp_path, {"classes": list("abcd")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.json", "probe.npz"]
    loaded, info = saved.load(tmp_path)
    assert isinstance(loaded, LogisticRegression) and info["C"] == 0.5
    assert np.allclose(loaded.predict_proba(x), clf.predict_proba(x))
    assert np.array_equal(loaded.predict(x), clf.predict(x))


@pytest.mark.parametrize("key, value", [("arch", "RN50"), ("embed_dim", 1024), ("weights_id", "random(seed=0)"),
                                        ("layer", "pre_projection")])
def test_features_of_another_encoder_are_refused(key, value):
    info = {"arch": "ViT-B-32", "weights_id": "ViT-B-32/openai", "layer": "projection", "embed_dim": 512}
    identity.check(info, dict(info), identity.ENCODER_KEYS, "features/test", "the probe was trained on")
    with pytest.raises(ClipprobeError, match=f"features/test: features have {key}="):
        identity.check(info, {**info, key: value}, identity.ENCODER_KEYS, "features/test", "the probe was trained on")


def test_too_small_a_validation_fraction_says_to_raise_it_and_to_what():
    y = np.repeat(np.arange(10), 3)
    with pytest.raises(ClipprobeError, match=r"tune.val_fraction=0.1 gives 3 validation samples for 10 classes; "
                                             r"raise tune.val_fraction to at least 0.334,"):
        validation.validation_split(y, 0.1, 0)
    tr, val = validation.validation_split(y, 0.334, 0)
    assert len(set(y[val])) == len(set(y[tr])) == 10


def test_too_large_a_validation_fraction_says_to_lower_it_and_to_what():
    y = np.repeat(np.arange(10), 3)
    with pytest.raises(ClipprobeError, match=r"tune.val_fraction=0.999 leaves 0 training samples for 10 classes; "
                                             r"lower tune.val_fraction to at most 0.666,") as e:
        validation.validation_split(y, 0.999, 0)
    assert "raise" not in str(e.value)
    tr, val = validation.validation_split(y, 0.666, 0)
    assert len(set(y[val])) == len(set(y[tr])) == 10


def test_warm_started_fit_agrees_with_a_cold_scikit_learn_fit():
    """Same objective and stopping rule: a warm start from another C changes only the path.
    Tolerance (both stop at scikit-learn's default gradient tolerance, 1e-4): coefficients
    within 2% of their scale, >= 99% identical predictions, probabilities within 0.02."""
    x, y = _blobs(100, 2, dim=30, classes=5)
    cold = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    warm = linear.fit(x, y, 1.0, 1000, start=linear.fit(x, y, 0.1, 1000))
    assert isinstance(warm, LogisticRegression) and not warm.warm_start
    scale = np.abs(cold.coef_).max()
    assert np.abs(warm.coef_ - cold.coef_).max() < 0.02 * scale
    assert np.abs(warm.intercept_ - cold.intercept_).max() < 0.02 * scale
    assert np.mean(warm.predict(x) == cold.predict(x)) >= 0.99
    assert np.abs(warm.predict_proba(x) - cold.predict_proba(x)).max() < 0.02


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_torch_solver_minimises_scikit_learns_objective(C):
    """Tight tolerance on both: the same minimiser (coefficients within 1e-4 absolute)."""
    from clipprobe.probe import torch_solver

    x, y = _blobs(80, 3, dim=20, classes=4)
    x = x.astype(np.float64)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(x, y)
    ours = torch_solver.fit(x, y, C, max_iter=5000, device="cpu", tol=1e-10)
    assert isinstance(ours, LogisticRegression) and np.array_equal(ours.classes_, ref.classes_)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4
    assert np.abs(ours.intercept_ - ref.intercept_).max() < 1e-4


def test_probe_predict_is_scikit_learns_predict_for_multinomial_and_binary_probes():
    for classes in (2, 5):
        x, y = _blobs(50, 0, classes=classes)
        clf = linear.fit(x, y, 1.0, 200)
        assert np.array_equal(linear.predict(clf, x), clf.predict(x))


def test_torch_solver_at_default_tolerance_predicts_as_scikit_learn():
    """float32 features, default tolerance: >= 99% identical predictions, probabilities within 0.02."""
    x, y = _blobs(200, 4, dim=40, classes=6)
    ref = linear.fit(x, y, 1.0, 1000)
    ours = linear.fit(x, y, 1.0, 1000, solver="torch", device="cpu")
    assert np.mean(ours.predict(x) == ref.predict(x)) >= 0.99
    assert np.abs(ours.predict_proba(x) - ref.predict_proba(x)).max() < 0.02


def test_search_start_round_trips_and_may_be_empty(tmp_path):
    x, y = _blobs(20, 5)
    clf = linear.fit(x, y, 0.5, 1000)
    saved.save_start(clf, tmp_path / "start.npz")
    start = saved.load_start(tmp_path / "start.npz", np.unique(y))
    assert np.array_equal(start.coef_, clf.coef_) and np.array_equal(start.intercept_, clf.intercept_)
    assert saved.load_start(tmp_path / "start.npz", np.arange(5)) is None   # other classes
    saved.save_start(None, tmp_path / "none.npz")
    assert saved.load_start(tmp_path / "none.npz", np.unique(y)) is None


def test_torch_solver_names_a_missing_gpu():
    import torch

    from clipprobe.probe import torch_solver

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ClipprobeError, match="train.device=cuda:0"):
        torch_solver.Problem(*_blobs(5, 0), device="cuda:0")


@pytest.mark.parametrize("C", [0.01, 1.0, 1e4])
def test_torch_solver_on_one_problem_from_a_warm_start_minimises_scikit_learns_objective(C):
    """The search's path: float32 features centred and eigendecomposed once (`Problem`), fits
    warm-started from another C.  Converged, both reach one minimiser: coefficients within 1e-4."""
    from clipprobe.probe import torch_solver

    x, y = _blobs(80, 6, dim=20, classes=4)
    x = x + 5.0  # off-centre and badly conditioned, as CLIP features are
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=20000).fit(x.astype(np.float64), y)
    problem = torch_solver.Problem(x, y, device="cpu")
    start = torch_solver.fit(problem, None, C / 10, max_iter=5000)
    ours = torch_solver.fit(problem, None, C, max_iter=5000, start=start, tol=1e-10)
    assert np.array_equal(ours.classes_, ref.classes_)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4 * max(1.0, np.abs(ref.coef_).max())
    assert np.abs(ours.intercept_ - ref.intercept_).max() < 1e-4 * max(1.0, np.abs(ref.intercept_).max())


def test_search_with_the_torch_solver_scores_each_C_as_converged_scikit_learn_fits():
    x, y = _blobs(60, 7)
    tr, val = validation.validation_split(y, 0.3, 0)
    s = search.search_C(x[tr], y[tr], x[val], y[val], max_iter=5000, solver="torch", device="cpu")
    assert s.n_fits == len(s.fits) and s.probe.C == s.C
    for c, acc, _ in s.fits:
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=20000).fit(x[tr].astype(np.float64), y[tr])
        assert np.mean(ref.predict(x[val]) == y[val]) * 100 == pytest.approx(acc, abs=100 / len(val) + 1e-9)


def test_sklearn_fit_on_centred_features_is_scikit_learns_fit_on_the_features():
    """linear.fit centres the features and maps the intercept back: on off-centre features it
    reaches scikit-learn's own (converged) optimum: coefficients and intercepts within 1% of
    their scale, the same predictions, and the intercepts sum to 0 as scikit-learn's do."""
    x, y = _blobs(100, 8, dim=15, classes=3)
    x = x + 20.0
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=20000).fit(x.astype(np.float64), y)
    ours = linear.fit(x, y, 0.5, 1000)
    scale = np.abs(ref.coef_).max()
    assert np.abs(ours.coef_ - ref.coef_).max() < 0.01 * scale
    assert np.abs(ours.intercept_ - ref.intercept_).max() < 0.01 * np.abs(ref.intercept_).max()
    assert np.array_equal(ours.predict(x), ref.predict(x))
    assert abs(ours.intercept_.sum()) < 1e-6 * np.abs(ours.intercept_).max()


def test_search_selects_on_the_score_it_is_given():
    x, y = _blobs(30, 1)
    tr, val = validation.validation_split(y, 0.3, 0)
    calls = []

    def smallest_C_wins(clf, x_val, y_val):   # a score that prefers small C, unlike top-1
        calls.append(len(y_val))
        return -math.log10(clf.C)
    s = search.search_C(x[tr], y[tr], x[val], y[val], max_iter=50, score=smallest_C_wins)
    assert s.C == min(s.curve) and s.val_score == -math.log10(s.C) and set(calls) == {len(val)}


def test_multi_label_probe_is_one_vs_rest_and_round_trips(tmp_path):
    from clipprobe import metrics
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6)).astype(np.float32)
    y = np.stack([(x[:, k] > 0).astype(np.int8) for k in range(3)], axis=1)
    y[0, 0] = -1                                            # difficult: left out of class 0's fit
    s = search.search_C(x[:80], y[:80], x[80:], y[80:], max_iter=200, score=metrics.scorer("map11"))
    clf = s.probe
    assert isinstance(clf, logreg.MultiLabelProbe) and clf.coef_.shape == (3, 6)
    assert metrics.map11(y[80:], clf.decision_function(x[80:])) == s.val_score > 90
    for k in range(3):   # each class its own binary scikit-learn fit
        ref = linear.fit(x[:80][y[:80, k] != -1], (y[:80, k][y[:80, k] != -1] == 1).astype(int), s.C, 200)
        np.testing.assert_allclose(clf.coef_[k], ref.coef_[0], rtol=1e-3, atol=1e-3)   # warm vs cold start
    saved.save(clf, tmp_path, {"classes": ["a", "b", "c"]})
    loaded, info = saved.load(tmp_path)
    assert info["multi_label"] and np.allclose(loaded.decision_function(x), clf.decision_function(x), rtol=1e-6)
    saved.save_start(clf, tmp_path / "start.npz")
    start = saved.load_start(tmp_path / "start.npz", saved.classes_of(y))
    assert isinstance(start, logreg.MultiLabelProbe) and np.array_equal(start.coef_, clf.coef_)


def test_the_search_prints_each_fit_as_it_ends():
    import io
    x, y = _blobs(30, 3)
    tr, val = validation.validation_split(y, 0.3, 0)
    seen, buf = [], io.StringIO()
    progress = search.progress("top1", out=buf)

    def on_fit(C, score, n_iter):
        seen.append(buf.getvalue().count("\n"))   # lines printed before this fit's own
        progress(C, score, n_iter)

    s = search.search_C(x[tr], y[tr], x[val], y[val], max_iter=200, on_fit=on_fit)
    lines = buf.getvalue().splitlines()
    assert seen == list(range(s.n_fits)) and len(lines) == s.n_fits
    for i, (line, (C, score, n_iter)) in enumerate(zip(lines, s.fits), 1):
        assert line.split() == ["fit", f"{i}:", "C", "=", f"{C:.4g}", "validation", "top1", f"{score:.2f}%",
                                str(n_iter), "iterations", line.split()[-2], "s)"]
