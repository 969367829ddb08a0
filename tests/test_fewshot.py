"""Few-shot sampling, the grid of probes, and the comparison with zero-shot."""

import os

import numpy as np
import pytest
import torch

from clipprobe import devices, intervals, params
from clipprobe.errors import ClipprobeError
from clipprobe.probe import fewshot, torch_solver
from clipprobe.report import compare


def _labels(per_class=(30, 25, 40)):
    return np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])


def test_sample_draws_exactly_k_per_class_and_min_k_4_for_validation():
    y = _labels()
    for k in (1, 2, 4, 8, 16):
        shots, val = fewshot.sample(y, k, 0, np.unique(y))
        assert np.array_equal(np.bincount(y[shots]), [k] * 3)
        assert np.array_equal(np.bincount(y[val]), [min(k, 4)] * 3)


def test_shots_and_validation_are_disjoint_and_validation_avoids_every_larger_k():
    y = _labels()
    labels = np.unique(y)
    all_shots = fewshot.sample(y, 16, 3, labels)[0]
    for k in (1, 2, 4, 8, 16):
        shots, val = fewshot.sample(y, k, 3, labels)
        assert not set(shots) & set(val)
        assert not set(val) & set(all_shots)


def test_official_val_split_supplies_validation_and_never_the_test_split():
    y, y_val = _labels(), _labels((5, 6, 7))
    shots, val = fewshot.sample(y, 4, 0, np.unique(y), y_val)
    assert np.array_equal(np.bincount(y_val[val]), [4, 4, 4]) and val.max() < len(y_val)
    assert np.array_equal(np.bincount(y[shots]), [4, 4, 4])


def test_same_seed_same_sets_other_seed_other_sets_and_k_sets_nested():
    y = _labels()
    labels = np.unique(y)
    a, b = fewshot.sample(y, 4, 1, labels), fewshot.sample(y, 4, 1, labels)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(fewshot.sample(y, 4, 2, labels)[0], a[0])
    for small, large in ((1, 2), (2, 4), (4, 8), (8, 16)):
        assert set(fewshot.sample(y, small, 1, labels)[0]) <= set(fewshot.sample(y, large, 1, labels)[0])


def test_shortage_names_the_first_class_that_cannot_supply_k_plus_its_validation():
    y = _labels((30, 19, 40))
    assert fewshot.shortage(y, 8, np.unique(y)) is None                     # 8 + 4 <= 19
    s = fewshot.shortage(y, 16, np.unique(y))
    assert (s.k, s.label, s.have, s.need, s.split) == (16, 1, 19, 20, "train")
    s = fewshot.shortage(y, 4, np.unique(y), y_val=_labels((5, 3, 5)))
    assert (s.label, s.have, s.need, s.split) == (1, 3, 4, "val")


def _clusters(per_class, n_test=20, dim=16):
    """Train and test features of well-separated Gaussian classes."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(len(per_class), dim)) * 3
    y = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    y_te = np.repeat(np.arange(len(per_class)), n_test)
    return [(means[v] + rng.normal(size=(len(v), dim))).astype(np.float32) for v in (y, y_te)] + [y, y_te]


def test_grid_fits_each_k_and_seed_skips_the_k_a_class_cannot_supply_and_reports_it():
    x, x_te, y, y_te = _clusters((30, 13, 30))
    runs, skipped = fewshot.grid(x, y, x_te, y_te, [1, 8, 16], 2, max_iter=200, device="cpu")
    assert sorted({(r.k, r.seed) for r in runs}) == [(1, 0), (1, 1), (8, 0), (8, 1)]
    assert [(s.k, s.label) for s in skipped] == [(16, 1)]
    assert min(r.test["top1"] for r in runs if r.k == 8) > 90            # well-separated clusters
    out = fewshot.summary(runs, skipped, ["a", "b", "c"], [1, 8, 16], 2, y_te, 200)
    assert list(out["results"]) == ["1", "8"] and set(out["results"]["8"]["per_seed"]) == {"0", "1"}
    assert out["skipped"] == [{"k": 16, "class": "b", "split": "train", "have": 13, "need": 20}]
    assert out["n_test"] == len(y_te) and out["metric"] == "top1"
    r8 = out["results"]["8"]
    seeds = [s["top1"] for s in r8["per_seed"].values()]
    assert r8["top1"]["value"] == pytest.approx(np.mean(seeds), abs=1e-3) and r8["score"] == r8["top1"]
    assert r8["top1"]["std"] == pytest.approx(np.std(seeds), abs=1e-3)
    assert r8["top1"]["low"] <= r8["top1"]["value"] <= r8["top1"]["high"]
    assert all(s["converged"] and s["n_iter"] > 0 for s in r8["per_seed"].values())
    note = fewshot.skip_note(skipped[0], ["a", "b", "c"])
    assert "k=16" in note and "'b'" in note and "\n" not in note
    r1 = out["results"]["1"]["score"]
    assert fewshot.curve_rows(out) == [(1, 0.0, r1["value"], r1["std"], r1["low"], r1["high"], 2),
                                       (8, 3.0, r8["score"]["value"], r8["score"]["std"], r8["score"]["low"],
                                        r8["score"]["high"], 2)]
    assert fewshot.metrics_of(out) == {"n_test": 60, **{f"{k}-shot": {
        "score": r["score"]["value"], "score_low": r["score"]["low"], "score_high": r["score"]["high"],
        "score_std": r["score"]["std"]} for k, r in out["results"].items()}}


def test_few_shot_interval_is_the_bootstrap_of_each_images_mean_correctness_over_seeds():
    y = np.array([0, 1] * 50)
    right = [np.arange(100) < 60, np.arange(100) < 80]          # seed 0: 60% right, seed 1: 80%
    runs = [fewshot.Run(1, s, 1.0, 50.0, {"top1": 60.0 + 20 * s, "mean_per_class_recall": 60.0 + 20 * s,
                                          "score": 60.0 + 20 * s, "metric": "top1"},
                        np.packbits(c).tobytes(), (5,)) for s, c in enumerate(right)]
    r = fewshot.summary(runs, [], ["a", "b"], [1], 2, y, 1000)["results"]["1"]["top1"]
    expected = intervals.percentile(intervals.distribution("top1", {"label": y, "correct": np.mean(right, axis=0)}))
    assert (r["value"], r["std"], (r["low"], r["high"])) == (70.0, 10.0, expected)


def test_grid_in_worker_processes_gives_the_runs_of_one_process_in_order():
    x, x_te, y, y_te = _clusters((30, 13, 30))
    seen = []
    one, _ = fewshot.grid(x, y, x_te, y_te, [1, 2, 8], 3, max_iter=200, device="cpu", workers=1)
    two, _ = fewshot.grid(x, y, x_te, y_te, [1, 2, 8], 3, max_iter=200, device="cpu", workers=2, on_run=lambda r, *_: seen.append(r))
    assert [(r.k, r.seed) for r in two] == [(k, s) for k in (1, 2, 8) for s in range(3)]
    assert two == one and sorted(seen, key=lambda r: (r.k, r.seed)) == two
    assert fewshot._grid == {}                      # the features are not held after the grid


def test_grid_progress_says_how_many_of_the_total_are_done_and_the_time_left():
    import io
    x, x_te, y, y_te = _clusters((30, 13, 30))
    buf = io.StringIO()
    fewshot.grid(x, y, x_te, y_te, [1, 2], 2, max_iter=200, device="cpu", workers=1, on_run=fewshot.progress(buf))
    lines = buf.getvalue().splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("elapsed, ETA " in line for line in lines[:-1]) and "ETA" not in lines[-1]
    assert "-shot seed" in lines[0] and "test top-1" in lines[0]


def test_grid_workers_are_the_usable_cpus_within_the_memory_budget_and_one_on_a_gpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert fewshot.processes(15, "torch", "cpu") == 4 and fewshot.processes(3, "sklearn", "auto") == 3
    largest = (16 * 1000, 1024, 1000, 4)                 # 16 shots x 1000 classes of 1024-d float32 features
    peak = torch_solver.Plan(*largest, 2**40).peak
    assert fewshot.processes(15, "torch", "cpu", memory=2 * peak + 1, largest=largest) == 2
    assert fewshot.processes(15, "torch", "cpu", memory=peak // 2, largest=largest) == 1
    monkeypatch.setattr(devices, "pick_device", lambda device, param: torch.device("cuda"))
    assert fewshot.processes(15, "torch", "auto") == 1


@pytest.mark.parametrize("curve, zs, worth", [
    ({1: 40.0, 2: 50.0, 4: 60.0}, 55.0, 2.8),        # halfway from 2 to 4 in log2: 2 ** 1.5, two figures
    ({4: 40.0, 8: 50.0, 16: 60.0}, 52.5, 9.5),       # 2 ** 3.25 = 9.51
    ({8: 40.0, 16: 50.0}, 48.0, 14.0),               # 2 ** 3.8 = 13.93: 14, not 13.929
    ({1: 40.0, 2: 50.0}, 30.0, "< 1"),
    ({1: 40.0, 2: 50.0, 16: 70.0}, 75.0, "> 16"),
    ({1: 40.0, 2: 50.0}, 50.0, 2.0),
    ({}, 50.0, None),
])
def test_shots_zero_shot_is_worth_interpolates_in_log2_k_to_two_figures(curve, zs, worth):
    assert compare.shots_worth(curve, zs) == worth


def test_the_summary_says_why_there_is_no_worth_instead_of_none(tmp_path):
    """fewshot.shots: [] (no curve), as the three stages' records give it."""
    import json

    def score(v):
        return {"value": v, "low": v - 1, "high": v + 1}

    full = {"dataset": "d", "model": "m", "weights": "w", "metric": "top1", "n_test": 100, "features": "f",
            "metrics": {"top1": score(50.0)}}
    fewshot = {"metric": None, "results": {}, "skipped": [], "features": "f"}
    zeroshot = {"metric": "top1", "metrics": {"top1": score(12.0)}, "features": "f"}
    (tmp_path / "fewshot.json").write_text(json.dumps(fewshot))
    result = compare.compare(fewshot, zeroshot, full)
    (tmp_path / "compare.json").write_text(json.dumps(result))
    text = compare.summary(tmp_path)
    assert result["zeroshot_worth_shots"] is None and "None" not in text
    assert "12.00% [11.00, 13.00] (no few-shot curve to weigh it against" in text


@pytest.mark.parametrize("raw, culprit", [
    ({"fewshot": {"seeds": 0}}, "fewshot.seeds"),
    ({"fewshot": {"shots": [1, 0, 4]}}, "fewshot.shots"),
    ({"fewshot": {"shots": [2, 2]}}, "fewshot.shots"),
    ({"fewshot": {"shots": 4}}, "fewshot.shots"),
    ({"zeroshot": {"templates": "no/such/prompts.yaml"}}, "zeroshot.templates"),
])
def test_bad_fewshot_and_zeroshot_params_name_the_param(raw, culprit):
    with pytest.raises(ClipprobeError) as e:
        params.parse(raw)
    assert culprit in str(e.value) and "\n" not in str(e.value)


def test_empty_shots_turn_fewshot_off():
    assert params.parse({"fewshot": {"shots": []}}).fewshot.shots == []
