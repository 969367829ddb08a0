"""Few-shot probes: k training images per class, drawn per seed, C searched per draw.

C is searched on a small validation set and test top-1 recorded; the CLIP paper's data-efficiency curve (its Figures 6-7),
with CoOp's few-shot protocol (validation of min(k, 4) images per class).

Sampling is nested: for one seed, each class's images are shuffled once (a generator seeded by
(seed, class), so a class's draw does not depend on the others), the k shots are the first k of
that order and the validation images the last min(k, 4) of it (or the first min(k, 4) of the
class's shuffled official val split). So the 2-shot set contains the 1-shot set: the curve of one
seed shows what more images of the same draw add, not a fresh draw's luck. Shots, validation and
test never overlap: the validation images come after every shot of any k the class can supply.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from clipprobe import intervals, metrics
from clipprobe.probe.search import search_C

VAL_PER_CLASS = 4  # CoOp: min(k, 4) validation images per class
# A probe whose shots x (features + 1) x classes is below this runs on one torch thread: each
# L-BFGS step then takes about a millisecond, which a second thread only slows with its
# synchronisation (on 2 shared cores under load, 15x slower). 16 shots x 1000 classes is above it.
ONE_THREAD_BELOW = 2 ** 24
CURVE = ["shots", "log2_shots", "score_mean", "score_std", "score_low", "score_high", "n_seeds"]  # metrics/fewshot.csv


def n_val(k: int) -> int:
    return min(k, VAL_PER_CLASS)


def _order(y: np.ndarray, label: int, seed: int) -> np.ndarray:
    """The indices of class `label` in `y`, shuffled by (seed, label)."""
    idx = np.flatnonzero(y == label)
    return np.random.default_rng([seed, int(label)]).permutation(idx)


@dataclass(frozen=True)
class Shortage:
    """A k some class cannot supply: `have` images where `need` are needed."""
    k: int
    label: int
    have: int
    need: int
    split: str


def shortage(y: np.ndarray, k: int, labels: np.ndarray, y_val: np.ndarray | None = None) -> Shortage | None:
    """The first class (in label order) short of k shots plus its validation share, or None."""
    for label in labels:
        have = int(np.sum(y == label))
        if y_val is None:
            if have < k + n_val(k):
                return Shortage(k, int(label), have, k + n_val(k), "train")
        else:
            if have < k:
                return Shortage(k, int(label), have, k, "train")
            have_val = int(np.sum(y_val == label))
            if have_val < n_val(k):
                return Shortage(k, int(label), have_val, n_val(k), "val")
    return None


def sample(y: np.ndarray, k: int, seed: int, labels: np.ndarray,
           y_val: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(shot indices into y, validation indices into y_val, or into y where there is no val split).

    Every class in `labels` must supply them (see `shortage`)."""
    shots, val = [], []
    for label in labels:
        order = _order(y, label, seed)
        shots.append(order[:k])
        if y_val is None:
            val.append(order[len(order) - n_val(k):])
        else:
            val.append(_order(y_val, label, seed)[:n_val(k)])
    return np.sort(np.concatenate(shots)), np.sort(np.concatenate(val))


@contextmanager
def _torch_threads(size: int, solver: str):
    if solver != "torch" or size >= ONE_THREAD_BELOW:
        yield
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Run:
    """One (k, seed) probe: its chosen C, validation score, test metrics, which test images it got
    right (np.packbits of them: for the interval over test images) and each search fit's L-BFGS
    iterations."""
    k: int
    seed: int
    C: float
    val_score: float
    test: dict
    correct: bytes = b""
    n_iters: tuple[int, ...] = ()


# The grid's inputs while it runs: forked workers inherit them (features are never pickled per task)
_grid: dict = {}


def _run(job: tuple[int, int]) -> Run:
    """The (k, seed) probe of the running grid."""
    k, seed = job
    g = _grid
    x, y, val, labels = g["x"], g["y"], g["val"], g["labels"]
    tr, va = sample(y, k, seed, labels, None if val is None else val[1])
    x_va, y_va = (x[va], y[va]) if val is None else (val[0][va], val[1][va])
    with _torch_threads(len(tr) * (x.shape[1] + 1) * len(labels), g["solver"]):
        s = search_C(x[tr], y[tr], x_va, y_va, max_iter=g["max_iter"], solver=g["solver"], device=g["device"],
                           memory=g["memory"], score=metrics.scorer(g["metric"]))
    proba = s.probe.predict_proba(g["x_test"])
    test = metrics.metrics(g["y_test"], proba, s.probe.classes_, g["metric"])
    correct = np.packbits(s.probe.classes_[proba.argmax(axis=1)] == g["y_test"]).tobytes()
    return Run(k, seed, s.C, s.val_score, test, correct, tuple(it for _, _, it in s.fits))


def _one_thread() -> None:
    import torch
    torch.set_num_threads(1)


def processes(jobs: int, solver: str = "torch", device: str = "auto", memory: int | str = "auto",
              largest: tuple[int, int, int, int] | None = None) -> int:
    """Worker processes for a grid of `jobs` probes: one per CPU this process may use, each on one
    thread (a few-shot fit is too small to share between threads), and no more than the memory
    budget (`train.memory`) holds torch solvers of the `largest` probe (rows, features, classes,
    bytes per feature); one on a GPU, whose context a forked process cannot use."""
    n = min(jobs, len(os.sched_getaffinity(0)))
    if solver == "torch":
        from clipprobe.devices import pick_device
        from clipprobe.probe import torch_solver
        where = pick_device(device, param="train.device")
        if where.type != "cpu":
            return 1
        if largest is not None:
            budget = torch_solver.budget(memory, where)
            n = min(n, budget // torch_solver.Plan(*largest, budget).peak)
    return max(1, n)


def grid(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, shots, seeds: int,
         val: tuple[np.ndarray, np.ndarray] | None = None, max_iter: int = 1000, solver: str = "torch",
         device: str = "auto", memory: int | str = "auto", metric: str = "top1", on_run=None,
         workers: int | None = None) -> tuple[list[Run], list[Shortage]]:
    """Every (k, seed) probe of the grid: C searched (`probe.search.search_C`, the paper's protocol) on
    the validation images by the dataset's headline `metric`, the probe at that C fitted on the
    k shots, scored on the test features. Single-label datasets only.

    A k some class cannot supply is skipped (returned as a `Shortage`), the rest still run.
    `val`: the dataset's official val split (features, labels), where it has one.
    The probes are independent: on CPU they run in `workers` forked processes (None: `processes`);
    each is deterministic, so the runs are the same however many there are. `on_run(run, done,
    total)` sees each run as it finishes (`progress` prints it); the runs come back ordered by (k, seed).
    """
    labels = np.unique(y)
    jobs, skipped = [], []
    for k in sorted(shots):
        short = shortage(y, k, labels, None if val is None else val[1])
        if short is not None:
            skipped.append(short)
        else:
            jobs += [(k, seed) for seed in range(seeds)]
    if workers is None:
        largest = (max((k for k, _ in jobs), default=0) * len(labels), x.shape[1], len(labels), x.dtype.itemsize)
        workers = processes(len(jobs), solver, device, memory, largest)
    _grid.update(x=x, y=y, val=val, labels=labels, x_test=x_test, y_test=y_test, max_iter=max_iter,
                 solver=solver, device=device, memory=memory, metric=metric)
    runs = []
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread) if workers > 1 else None
    try:  # in a pool the largest k first: the slowest probes start before it runs dry
        for r in pool.imap_unordered(_run, sorted(jobs, key=lambda j: -j[0])) if pool else map(_run, jobs):
            runs.append(r)
            if on_run is not None:
                on_run(r, len(runs), len(jobs))
    finally:
        if pool:
            pool.terminate()
        _grid.clear()
    return sorted(runs, key=lambda r: (r.k, r.seed)), skipped


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress(out=None):
    """An `on_run` printing each finished probe with the count done of the total and an estimate of
    the time left (elapsed per probe so far; the largest k run first, so it errs long), flushed."""
    start = time.perf_counter()

    def on_run(r: Run, done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        eta = f", ETA {_duration(elapsed / done * (total - done))}" if done < total else ""
        print(f"  {done:>{len(str(total))}}/{total}: {r.k:>3}-shot seed {r.seed}: C = {r.C:.4g}, test top-1 "
              f"{r.test['top1']:.2f}%  ({_duration(elapsed)} elapsed{eta})", file=out, flush=True)
    return on_run


def summary(runs: list[Run], skipped: list[Shortage], classes: list[str], shots, seeds: int,
            y_test: np.ndarray | None = None, max_iter: int | None = None) -> dict:
    """The few-shot part of `results/fewshot.json`: per k, for the headline `score`, top-1 and mean
    per-class recall, the mean over seeds, its 95% interval over test images (a bootstrap of each
    image's mean correctness over seeds) and the std over seeds (numpy's, ddof=0: the spread); each
    seed's values, chosen C and convergence; the skipped k."""
    metric = runs[0].test["metric"] if runs else None
    out = {"shots": list(shots), "seeds": seeds, "n_classes": len(classes), "results": {}, "skipped": []}
    if metric:
        out.update(metric=metric, n_test=len(y_test))
    for k in sorted({r.k for r in runs}):
        rs = [r for r in runs if r.k == k]
        right = [np.unpackbits(np.frombuffer(r.correct, np.uint8), count=len(y_test)) for r in rs]
        data = {"label": y_test, "correct": np.mean(right, axis=0)}
        entry = {}
        for name in ("score", metrics.TOP1, metrics.MEAN_PER_CLASS):
            values = np.array([r.test[name] for r in rs])
            low, high = intervals.percentile(intervals.distribution(metric if name == "score" else name, data))
            entry[name] = {"value": round(float(values.mean()), 4), "low": low, "high": high,
                           "std": round(float(values.std()), 4)}
        entry["per_seed"] = {str(r.seed): {
            "top1": r.test["top1"], "mean_per_class_recall": r.test["mean_per_class_recall"], "C": r.C,
            "val_score": r.val_score, "n_iter": sum(r.n_iters),
            "converged": max_iter is None or all(i < max_iter for i in r.n_iters)} for r in rs}
        out["results"][str(k)] = entry
    out["skipped"] = [{"k": s.k, "class": classes[s.label], "split": s.split, "have": s.have, "need": s.need}
                      for s in skipped]
    return out


def metrics_of(record: dict) -> dict:
    """`metrics/fewshot.json`: numbers only, per k the mean score over seeds, its interval and std."""
    out = {"n_test": record["n_test"]} if record.get("results") else {}
    for k, r in record["results"].items():
        s = r["score"]
        out[f"{k}-shot"] = {"score": s["value"], "score_low": s["low"], "score_high": s["high"], "score_std": s["std"]}
    return out


def curve_rows(summary_: dict) -> list[tuple]:
    """`metrics/fewshot.csv`: shots, log2 shots, the headline score's mean over seeds, its std and interval."""
    return [(int(k), round(float(np.log2(int(k))), 6), r["score"]["value"], r["score"]["std"], r["score"]["low"],
             r["score"]["high"], len(r["per_seed"])) for k, r in summary_["results"].items()]


def skip_note(s: Shortage, classes: list[str]) -> str:
    detail = f" ({s.k} shots + {n_val(s.k)} for validation)" if s.need == s.k + n_val(s.k) else ""
    return (f"note: few-shot k={s.k} skipped: class {classes[s.label]!r} has {s.have} {s.split} images, "
            f"{s.need} needed{detail}; the other k and the full-data probe are unaffected")
