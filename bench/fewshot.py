"""Few-shot speed: the default few-shot grid (k = 1, 2, 4, 8, 16 x 3 seeds: 15 C searches and
probes) against one full-data C search on the same 10-class features, and one 16-shot search on
1000 classes. They run what the stages run: `fewshot.grid` (the fewshot stage; for 1000 classes
its `fewshot.sample` + `search.search_C`) and `validation.validation_split` + `search.search_C` (the
tune stage, C: auto), with `train.solver: torch`.

    python bench/fewshot.py                      # generated features (see below), 2 torch threads
    python bench/fewshot.py --features bench     # the probe benchmark's small set (bench/benchsets.py)
    python bench/fewshot.py --features DIR       # a clipprobe project's features/ (e.g. after make demo)
    python bench/fewshot.py --workers 1          # the grid in one process (the stage: one per usable CPU)

Features: `generated` are seeded Gaussian class clusters in 512 dimensions (class means in a
64-d subspace, anisotropic noise with a decaying spectrum), 10,000 train / 2,000 test for 10
classes; `bench` is `bench/benchsets.py`'s `small` set (untrained ViT-B/32 features of Fashion-MNIST,
10,000 / 2,000; built once into bench/.cache, as bench/probe.py does); or the features a clipprobe project has cached.
The 1000-class case is always generated:
16 shots x 1000 classes to fit, 4 x 1000 to validate on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import benchsets
import numpy as np
import torch

from clipprobe.encode import store
from clipprobe.probe import fewshot, linear, search, validation

SHOTS, SEEDS = (1, 2, 4, 8, 16), 3


def generated(n_per_class: int, n_classes: int, dim: int = 512, seed: int = 0, spread: float = 0.06):
    """Class clusters: means in a 64-d subspace, noise with spectrum 1/sqrt(i+1); float32."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, 64)))[0]
    means = rng.normal(size=(n_classes, 64)) @ basis.T * spread
    y = np.repeat(np.arange(n_classes), n_per_class)
    noise = rng.normal(size=(len(y), dim)) / np.sqrt(np.arange(1, dim + 1)) * 3
    return (means[y] + noise @ np.linalg.qr(rng.normal(size=(dim, dim)))[0]).astype(np.float32), y


def ten_classes(source: str):
    if source not in ("generated", "bench"):  # a clipprobe project's features/ folder
        x, y, _, _ = store.read_features(Path(source) / "train")
        x_te, y_te, _, _ = store.read_features(Path(source) / "test")
        return x, y, x_te, y_te
    if source == "bench":
        return benchsets.load("small", Path(__file__).resolve().parent / ".cache")
    x, y = generated(1200, 10)
    test = np.concatenate([np.arange(c * 1200 + 1000, (c + 1) * 1200) for c in range(10)])
    train = np.setdiff1d(np.arange(len(y)), test)
    return x[train], y[train], x[test], y[test]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def ten(args):
    x, y, x_te, y_te = ten_classes(args.features)
    print(f"10 classes ({args.features}): train {x.shape}, test {x_te.shape}; {args.threads} torch threads")

    def full():
        tr, val = validation.validation_split(y, 0.2, 0)
        return search.search_C(x[tr], y[tr], x[val], y[val], solver="torch", device=args.device)

    s, t_full = timed(full)
    print(f"  one full-data search (tune stage): {t_full:6.1f} s  C = {s.C:.4g}, {s.n_fits} fits, "
          f"{sum(i for *_, i in s.fits)} L-BFGS iterations")
    workers = args.workers or fewshot.processes(len(SHOTS) * SEEDS, "torch", args.device)
    (runs, skipped), t_grid = timed(lambda: fewshot.grid(x, y, x_te, y_te, SHOTS, SEEDS, device=args.device,
                                                         workers=workers))
    print(f"  few-shot grid {len(SHOTS)} k x {SEEDS} seeds, {workers} worker(s): {t_grid:6.1f} s  ({len(runs)} searches, "
          f"{t_grid / max(len(runs), 1):.2f} s each); {t_grid / t_full:.2f}x the full-data search")
    for k in SHOTS:
        top1 = [r.test["top1"] for r in runs if r.k == k]
        print(f"    {k:>2}-shot test top-1 {np.mean(top1):6.2f} ± {np.std(top1):.2f}")


def thousand(args):
    x, y = generated(20, 1000, seed=1)  # 16 shots + 4 validation per class
    tr, va = fewshot.sample(y, 16, 0, np.unique(y))
    cpu = time.process_time()
    s, t_1000 = timed(lambda: search.search_C(x[tr], y[tr], x[va], y[va], solver="torch", device=args.device))
    print(f"1000 classes, 16 shots (16,000 x 512 to fit, 4,000 to validate): one search {t_1000:6.1f} s "
          f"({time.process_time() - cpu:.1f} CPU s), C = {s.C:.4g}, {s.n_fits} fits, "
          f"{sum(i for *_, i in s.fits)} L-BFGS iterations")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", default="generated",
                    help="generated | bench | a clipprobe project's features/ folder (train/ and test/)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0,
                    help="few-shot worker processes (default 0: as the stage runs, one per usable CPU)")
    ap.add_argument("--case", choices=("10", "1000", "both"), default="both", help="which comparison to run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = generated(20, 10)
    linear.fit(x, y, 1.0, solver="torch", device=args.device)  # first-call imports, untimed
    if args.case != "1000":
        ten(args)
    if args.case != "10":
        thousand(args)


if __name__ == "__main__":
    main()
