"""The torch solver's memory plan: chunk sizes from the budget, chunked fits reaching the
unchunked (and scikit-learn's) minimiser, and budgets too small stopping with one line."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from test_probe import _blobs

from clipprobe import params
from clipprobe.errors import ClipprobeError
from clipprobe.probe import search, torch_solver, validation
from clipprobe.probe.torch_solver import Plan

CPU = torch.device("cpu")


def _budget_for(x, y, fit_rows):
    """A budget whose plan cuts the closure into chunks of `fit_rows` rows."""
    plan = Plan(len(y), x.shape[1], len(np.unique(y)), x.dtype.itemsize, 0)
    return plan.fixed + fit_rows * plan.row_bytes


def test_plan_cuts_rows_to_the_budget_and_stays_within_it():
    p = Plan(n=1000, d=10, k=5, itemsize=4, budget=0)
    p = Plan(1000, 10, 5, 4, budget=p.fixed + 100 * p.row_bytes + 7)
    assert (p.rows, p.chunks) == (100, 10) and p.peak <= p.budget
    assert p.build_rows == min(1000, (p.budget - p.build_fixed) // p.build_row_bytes)
    roomy = Plan(1000, 10, 5, 4, budget=10**9)
    assert (roomy.rows, roomy.build_rows, roomy.chunks) == (1000, 1000, 1)
    assert Plan(10**6, 10, 5, 4, budget=10**12).build_rows == torch_solver.BUILD_ROWS


def test_imagenet_shape_on_a_small_budget_is_chunked_within_it():
    """1,281,167 x 1024 float32 features, 1000 classes: Z alone is 5.2 GB and one pass's logits
    and gradient 15.5 GB more, so a 12 GB budget takes the rows in chunks."""
    n, d, k = 1_281_167, 1024, 1000
    p = Plan(n, d, k, 4, budget=12 * 10**9)
    assert n * d * 4 < p.fixed < n * d * 4 + 0.5e9
    assert p.chunks == 3 and p.peak <= p.budget
    assert Plan(n, d, k, 4, budget=10**12).peak == pytest.approx(21.0e9, rel=0.01)   # one pass


def test_budget_in_bytes_or_auto_leaving_a_margin():
    assert torch_solver.budget(12345, CPU) == 12345
    free = torch_solver.free_memory(CPU)
    assert 0 < torch_solver.budget("auto", CPU) <= free - 512 * 2**20


def test_chunked_fit_reaches_the_unchunked_and_scikit_learn_minimiser():
    """Many chunks (9 of 320 rows per step, the build in chunks too): the same minimiser as one
    pass and as scikit-learn at tolerance 1e-10 (coefficients within 1e-4), at C = 100 (the
    most iterations, so the most chunked sums)."""
    C = 100.0
    x, y = _blobs(80, 3, dim=20, classes=4)
    x = x.astype(np.float64) + 5.0
    memory = _budget_for(x, y, 37)
    problem = torch_solver.Problem(x, y, device="cpu", memory=memory)
    assert problem.plan.chunks == 9 and problem.plan.build_rows < len(y)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(x, y)
    whole = torch_solver.fit(x, y, C, max_iter=5000, device="cpu", tol=1e-10)
    chunked = torch_solver.fit(problem, None, C, max_iter=5000, tol=1e-10)
    scale = max(1.0, np.abs(ref.coef_).max())
    for ours in (whole, chunked):
        assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4 * scale
        assert np.abs(ours.intercept_ - ref.intercept_).max() < 1e-4 * max(1.0, np.abs(ref.intercept_).max())
    assert np.abs(chunked.coef_ - whole.coef_).max() < 1e-6 * scale


def test_chunked_search_scores_every_C_as_the_unchunked_search():
    """float32 features, the search's path (one Problem, warm starts) through search.search_C."""
    x, y = _blobs(60, 7)
    tr, val = validation.validation_split(y, 0.3, 0)
    kw = dict(max_iter=5000, solver="torch", device="cpu")
    whole = search.search_C(x[tr], y[tr], x[val], y[val], **kw)
    chunked = search.search_C(x[tr], y[tr], x[val], y[val], memory=_budget_for(x[tr], y[tr], 23), **kw)
    assert chunked.C == whole.C and chunked.curve == whole.curve


def test_budget_below_the_fixed_parts_names_train_memory():
    x, y = _blobs(80, 3, dim=20, classes=4)
    with pytest.raises(ClipprobeError, match=r"^train.memory: 1.0 MB is too small .* needs at least") as e:
        torch_solver.Problem(np.tile(x, (40, 1)), np.tile(y, 40), device="cpu", memory=10**6)
    assert "\n" not in str(e.value)


def test_budget_one_row_short_of_a_chunk_names_train_memory():
    x, y = _blobs(80, 3, dim=20, classes=4)
    p = Plan(len(y), 20, 4, 4, 0)
    need = max(p.fixed + p.row_bytes, p.build_fixed + p.build_row_bytes)
    with pytest.raises(ClipprobeError, match="train.memory"):
        torch_solver.Problem(x, y, device="cpu", memory=need - 1)
    assert torch_solver.Problem(x, y, device="cpu", memory=need).plan.peak <= need


@pytest.mark.parametrize("value, expected", [("auto", "auto"), (4096, 4096), ("8GB", 8 * 10**9),
                                             ("512MiB", 512 * 2**20), ("1.5 gb", 1_500_000_000),
                                             ("2048", 2048)])
def test_train_memory_accepts_auto_bytes_and_sizes(value, expected):
    assert params.parse({"train": {"memory": value}}).train.memory == expected


@pytest.mark.parametrize("value", [0, -1, True, "lots", "8XB", "-1GB", "0.1B", 1.5, [8]])
def test_bad_train_memory_names_the_param(value):
    with pytest.raises(ClipprobeError, match=r"^params.yaml: train.memory must be auto") as e:
        params.parse({"train": {"memory": value}})
    assert "\n" not in str(e.value)
