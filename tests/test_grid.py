"""A queued grid end to end: `dvc exp run --queue` over 2 tiny models x 2 datasets, `dvc queue start`,
then `clipprobe report`; then one model of each source (open_clip's ViT-B/32, a timm model, a local
Hugging Face model directory) added to the grid. One grid for the whole module."""

import csv
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from conftest import FASHION_MNIST, REPO, TINY, make_image_folder, make_project, run

MODELS = (TINY, str(REPO / "tests" / "tiny-rn.json"))


def _hf_model_dir(d):
    """A tiny transformers ViT and its image processor, saved as a local model directory."""
    import transformers as t
    t.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                patch_size=8).save_pretrained(d)
    t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return str(d)


def _report(dest, env):
    out = dest / "reports"
    r = subprocess.run([sys.executable, "-m", "clipprobe", "report"], cwd=dest, env=env,
                       capture_output=True, text=True)
    rows = []
    if (out / "leaderboard.csv").is_file():
        with open(out / "leaderboard.csv") as f:
            rows = [row for row in csv.DictReader(f) if row["dataset"] != "mean"]
    return SimpleNamespace(rc=r.returncode, stdout=r.stdout, stderr=r.stderr, cells=rows,
                           files=sorted(p.name for p in out.glob("*")) if out.is_dir() else [])


def _experiments(dest, env):
    """name -> commit of every experiment, from git's refs (not through DVC's API)."""
    refs = run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], dest, env).split("\n")
    return {ref.rsplit("/", 1)[1]: sha for sha, ref in (line.split() for line in refs if line.strip())}


def _queue_and_run(dest, env, models, datasets, expected, *more):
    # target evaluate: the linear probe's stages only (zero-shot and few-shot are tested on their own)
    run(["dvc", "exp", "run", "--queue", "evaluate", "-S", f"model.name={','.join(models)}",
         "-S", f"data.name={','.join(datasets)}", *more], dest, env)
    run(["dvc", "queue", "start", "-j", "2"], dest, env)
    deadline = time.monotonic() + 900
    while True:   # cheap check first; then until the queue itself says it is done
        assert time.monotonic() < deadline, run(["dvc", "queue", "status"], dest, env)
        if len(_experiments(dest, env)) >= expected:
            status = run(["dvc", "queue", "status"], dest, env)
            if "Queued" not in status and "Running" not in status:
                break
        time.sleep(0.5)
    failed = [line.split()[1] for line in status.splitlines() if "Failed" in line]
    assert not failed, status + "".join(run(["dvc", "queue", "logs", name], dest, env) for name in failed)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    assert FASHION_MNIST.is_dir(), "Debian's dataset-fashion-mnist is not installed"
    base = tmp_path_factory.mktemp("grid")
    folder = str(make_image_folder(base / "colours", n_train=4, n_test=2, size=32))
    # C given (no search) and scikit-learn's solver (no torch optimiser to import): the cells are
    # what this module tests, not the probe
    dest, env = make_project(base / "project", model={"name": TINY, "weights": "random"}, C=1.0,
                             data={"limit_per_class": 4}, extract={"shard_size": 20}, train={"solver": "sklearn"})
    try:
        empty = _report(dest, env)
        _queue_and_run(dest, env, MODELS, ["fashion-mnist", folder], expected=4)
        first, first_exps = _report(dest, env), _experiments(dest, env)
        sources = ["ViT-B/32", "timm:test_vit", f"hf:{_hf_model_dir(base / 'hf-vit')}"]
        _queue_and_run(dest, env, sources, ["fashion-mnist"], 7, "-S", "model.weights=random")
        second, second_exps = _report(dest, env), _experiments(dest, env)
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=dest, env=env, capture_output=True)
    return SimpleNamespace(dest=dest, env=env, folder=folder, empty=empty, first=first, first_exps=first_exps,
                           second=second, second_exps=second_exps, sources=sources)


def _headline(g, sha):
    """(metric, value) of an experiment's headline, read from its git commit: the metric its record
    names, the score its metrics file holds."""
    record = json.loads(run(["git", "show", f"{sha}:results/evaluate.json"], g.dest, g.env))
    acc = json.loads(run(["git", "show", f"{sha}:metrics/accuracy.json"], g.dest, g.env))
    return record["metric"], acc["score"]


def test_report_on_zero_experiments_says_so_in_one_line(grid):
    assert grid.empty.rc == 1 and grid.empty.stdout == "" and grid.empty.files == []
    assert grid.empty.stderr.count("\n") == 1 and grid.empty.stderr.startswith("error: no finished experiments")


def test_each_cell_of_the_queued_grid_is_its_experiments_metric(grid):
    r = grid.first
    assert r.rc == 0, r.stderr
    assert r.files == ["leaderboard.csv", "leaderboard.md", "leaderboard.png"]
    assert len(grid.first_exps) == 4 and len(r.cells) == 4
    assert {(c["model"], c["dataset"]) for c in r.cells} == {(m, d) for m in MODELS
                                                            for d in ("fashion-mnist", grid.folder)}
    for c in r.cells:
        assert (c["metric"], float(c["value"])) == _headline(grid, grid.first_exps[c["experiment"]])
    assert "| tiny-clip.json | random | projection |" in r.stdout and "| mean |" in r.stdout   # auto, resolved
    assert "colours (top-1, n=6)" in r.stdout and "wrote reports/leaderboard.md" in r.stdout
    assert all(float(c["low"]) <= float(c["value"]) <= float(c["high"]) and c["n_test"] for c in r.cells)


def test_models_of_every_source_added_to_the_grid_compute_only_their_own_cells(grid):
    r = grid.second
    assert r.rc == 0, r.stderr
    new = set(grid.second_exps) - set(grid.first_exps)
    assert len(grid.second_exps) == 7 and len(new) == 3          # only the added models' experiments ran
    old_cells = {(c["model"], c["dataset"]): (c["value"], c["experiment"]) for c in grid.first.cells}
    cells = {(c["model"], c["dataset"]): (c["value"], c["experiment"]) for c in r.cells}
    assert {k: v for k, v in cells.items() if k[0] in MODELS} == old_cells
    assert {v[1] for k, v in cells.items() if k[0] in grid.sources} == new
    for name in new:    # its data is not prepared again: prepare comes from DVC's run-cache
        log = run(["dvc", "queue", "logs", name], grid.dest, grid.env)
        assert "Stage 'prepare' is cached" in log and "Running stage 'extract'" in log


def test_one_leaderboard_holds_open_clip_timm_and_hugging_face_rows(grid):
    r = grid.second
    rows = {(c["model"], c["weights"], c["layer"]) for c in r.cells if c["dataset"] == "fashion-mnist"}
    vit, timm_model, hf_model = grid.sources
    assert {(vit, "random", "projection"), (timm_model, "random", "pre_logits"), (hf_model, "random", "pre_logits")} <= rows
    for c in r.cells:
        if c["model"] in grid.sources:
            assert (c["metric"], float(c["value"])) == _headline(grid, grid.second_exps[c["experiment"]])
    assert "| ViT-B/32 | random | projection |" in r.stdout and "| timm:test_vit | random | pre_logits |" in r.stdout
    assert "| hf:hf-vit | random | pre_logits |" in r.stdout      # a model directory shows as its folder name


def test_report_of_an_unknown_experiment_is_one_clear_line(grid):
    r = subprocess.run([sys.executable, "-m", "clipprobe", "report", "--exp", "no-such-exp", "--md", "none",
                        "--csv", "none", "--png", "none"], cwd=grid.dest, env=grid.env, capture_output=True,
                       text=True)
    assert r.returncode == 1 and r.stderr.strip() == \
        "error: --exp no-such-exp: no finished experiment of that name or commit; `dvc exp show` lists them"
