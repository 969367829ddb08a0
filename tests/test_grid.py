"""A grid end to end through `clipprobe grid` (DVC's queue underneath): 2 tiny models x 2 datasets
with the queue's worker killed mid-grid, then `clipprobe report`; then the grid rerun with one model of
each source (open_clip's ViT-B/32, a timm model, a local Hugging Face model directory) added: only
their cells run; then a cell that fails. One project for the whole module."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
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
    """name -> commit of every experiment, from git's refs (not through DVC's API): the experiment refs,
    refs/exps/<2 hex>/<rest of the baseline sha>/<name>, not DVC's queue refs (refs/exps/stash,
    refs/exps/celery/..., which a queue that a killed worker left may still hold)."""
    refs = run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], dest, env).split("\n")
    out = {}
    for sha, ref in (line.split() for line in refs if line.strip()):
        parts = ref.split("/")
        if len(parts) == 5 and re.fullmatch(r"[0-9a-f]{2}", parts[2]):
            out[parts[4]] = sha
    return out


def _workers(dest):
    """PIDs of this project's DVC queue workers (`dvc exp queue-worker`, run in the project)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and b"queue-worker" in (d / "cmdline").read_bytes() and \
                    Path(os.readlink(d / "cwd")) == dest:
                pids.append(int(d.name))
        except OSError:   # gone meanwhile, or not ours to read
            pass
    return pids


def _grid(dest, env, models, datasets, *more, jobs=1, kill_after=None):
    """`clipprobe grid` (target evaluate: the linear probe's stages; zero-shot and few-shot are tested
    on their own); `kill_after`: SIGKILL the queue's worker once that grid line shows (mid-grid)."""
    out = dest.parent / f"grid-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "clipprobe", "grid", "--models", ",".join(models), "--datasets", ",".join(datasets),
           "--target", "evaluate", "-j", str(jobs), "--poll", "1", *more]
    with open(out, "w") as log:
        proc = subprocess.Popen(cmd, cwd=dest, env=env, stdout=log, stderr=subprocess.STDOUT)
    killed = []
    try:
        while kill_after and not killed:
            assert proc.poll() is None, out.read_text()
            if kill_after in out.read_text() and _workers(dest):
                killed = _workers(dest)
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    return SimpleNamespace(rc=proc.returncode, out=out.read_text(), killed=killed)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    assert FASHION_MNIST.is_dir(), "Debian's dataset-fashion-mnist is not installed"
    base = tmp_path_factory.mktemp("grid")
    folder = str(make_image_folder(base / "colours", n_train=4, n_test=2, size=32))
    broken = make_image_folder(base / "broken", n_train=2, n_test=1, size=32)
    for f in (broken / "test").rglob("*.png"):
        f.unlink()                                 # no test images: its prepare fails
    # C given (no search) and scikit-learn's solver (no torch optimiser to import): the cells are
    # what this module tests, not the probe
    dest, env = make_project(base / "project", model={"name": TINY, "weights": "random"}, C=1.0,
                             data={"limit_per_class": 4}, extract={"shard_size": 20}, train={"solver": "sklearn"})
    try:
        empty = _report(dest, env)
        first_run = _grid(dest, env, MODELS, ["fashion-mnist", folder], kill_after="1 done, 1 running")
        first, first_exps = _report(dest, env), _experiments(dest, env)
        sources = ["ViT-B/32", "timm:test_vit", f"hf:{_hf_model_dir(base / 'hf-vit')}"]
        second_run = _grid(dest, env, [*MODELS, *sources], ["fashion-mnist"], "-S", "model.weights=random", jobs=2)
        second, second_exps = _report(dest, env), _experiments(dest, env)
        failing = _grid(dest, env, [TINY], [str(broken)])
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=dest, env=env, capture_output=True)
    return SimpleNamespace(dest=dest, env=env, folder=folder, broken=broken, empty=empty, first_run=first_run,
                           first=first, first_exps=first_exps, second_run=second_run, second=second,
                           second_exps=second_exps, sources=sources, failing=failing)


def _headline(g, sha):
    """(metric, value) of an experiment's headline, read from its git commit: the metric its record
    names, the score its metrics file holds."""
    record = json.loads(run(["git", "show", f"{sha}:results/evaluate.json"], g.dest, g.env))
    acc = json.loads(run(["git", "show", f"{sha}:metrics/accuracy.json"], g.dest, g.env))
    return record["metric"], acc["score"]


def test_report_on_zero_experiments_says_so_in_one_line(grid):
    assert grid.empty.rc == 1 and grid.empty.stdout == "" and grid.empty.files == []
    assert grid.empty.stderr.count("\n") == 1 and grid.empty.stderr.startswith("error: no finished experiments")


def test_a_grid_whose_worker_is_killed_mid_grid_still_finishes_every_cell(grid):
    g = grid.first_run
    assert g.killed and g.rc == 0, g.out
    assert "grid: 4 cells; 0 finished already, 0 queued or running, queueing 4" in g.out
    assert "grid: the queue has no worker left (" in g.out and "starting it again" in g.out
    assert "grid: 4 of 4 cells finished" in g.out
    assert "| tiny-clip.json | random | projection |" in g.out.split("# Leaderboard: 4 experiments")[1]   # ends with it


def test_each_cell_of_the_queued_grid_is_its_experiments_metric(grid):
    r = grid.first
    assert r.rc == 0, r.stderr
    assert r.files == ["leaderboard.csv", "leaderboard.md", "leaderboard.png"]
    assert len(grid.first_exps) >= 4 and len(r.cells) == 4
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
    assert grid.second_run.rc == 0 and "grid: 5 cells; 2 finished already, 0 queued or running, queueing 3" \
        in grid.second_run.out, grid.second_run.out
    new = set(grid.second_exps) - set(grid.first_exps)
    assert len(new) == 3                                         # only the added models' experiments ran
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


def test_a_failed_cell_is_named_with_its_error_line_and_the_grid_says_so(grid):
    g = grid.failing
    assert g.rc == 1 and f"grid: FAILED {TINY} x {grid.broken}: error: {grid.broken / 'test'}: no usable images" \
        in g.out, g.out
    assert "grid: 0 of 1 cells finished, 1 failed" in g.out and "Leaderboard" not in g.out


def test_a_typo_in_a_grid_stops_it_before_anything_is_queued(grid):
    r = subprocess.run([sys.executable, "-m", "clipprobe", "grid", "--models", TINY, "--datasets", "cifar-10"],
                       cwd=grid.dest, env=grid.env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith("error: params.yaml: data.name must be one of")
    assert "\n" not in r.stderr.strip()


class _Queue:
    """DVC's queue as `grid._watch` sees it, scripted: each poll's (status by name, active workers)."""
    root = Path("/project")

    def __init__(self, polls):
        self.polls, self.starts, self.killed = list(polls), 0, []

    def start(self, jobs):
        self.starts += 1

    def status(self):
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    def kill(self, name):
        self.killed.append(name)

    def error_line(self, name):
        return f"error: {name} broke"


def test_watch_restarts_a_dead_queue_and_queues_again_what_its_worker_left_running(monkeypatch):
    from clipprobe.report import grid as grids
    monkeypatch.setattr(grids, "GRACE_S", 0)
    a, b = grids.Cell("m", "a"), grids.Cell("m", "b")
    dead = ({"x": "Running", "y": "Queued"}, 0)
    q = _Queue([({"x": "Running", "y": "Queued"}, 1), dead, dead, dead,
                ({"x": "Success", "x2": "Running", "y": "Queued"}, 1), ({"x2": "Success", "y": "Failed"}, 0)])
    lines = []
    failed = grids._watch(q, {"x": a, "y": b}, lambda cell: "x2", 1, 0, lines.append)
    assert q.killed == ["x"] and q.starts == 2 and failed == {b: "error: y broke"}
    assert any("no worker left (1 queued, 1 left running by it, queued again)" in ln for ln in lines)


def test_watch_stops_with_one_line_when_every_worker_it_starts_dies(monkeypatch):
    from clipprobe.errors import ClipprobeError
    from clipprobe.report import grid as grids
    monkeypatch.setattr(grids, "GRACE_S", 0)
    q = _Queue([({"x": "Queued"}, 0)])
    with pytest.raises(ClipprobeError, match=r"workers died 5 times in a row with no cell ending; see "
                                             r"/project/.dvc/tmp/exps/celery/\*.out"):
        grids._watch(q, {"x": grids.Cell("m", "a")}, lambda cell: "x", 1, 0, lambda line: None)
    assert q.starts == 1 + grids.MAX_RESTARTS
