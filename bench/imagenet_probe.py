"""Benchmark: the CLIP paper's C search + refit at ImageNet's shape, through clipprobe's library.

    python bench/imagenet_probe.py                                   # 1,281,167 x 1024, 1000 classes (a GPU: minutes)
    python bench/imagenet_probe.py --n 20000 --d 256 --k 100         # a reduced shape (CPU)
    python bench/imagenet_probe.py --scale 0.1                       # a tenth of the rows
    python bench/imagenet_probe.py --memory 2GB                      # train.memory (default auto)
    python bench/imagenet_probe.py --fit 1 --n 200000 --memory 1GB   # one cold fit at C = 1: its peak memory
    python bench/imagenet_probe.py --real large                      # the probe benchmark's features (benchsets)

Synthetic features with a known optimum: k class means drawn at random, each sample its class's
mean plus unit Gaussian noise, then every feature scaled (log-uniform over 0.05..1) and shifted,
so they are off-centre and badly conditioned as CLIP features are.  The classes share one
covariance, so the Bayes-optimal classifier is linear (nearest mean in the unscaled space): its
test top-1 is printed beside the probe's, and chance (1/k).  Generated in chunks of rows, each
from its own seed, so the same arguments give the same features on any machine and thread count.

The protocol is what the tune and train stages run with `C: auto`: a stratified 20% validation
split (seed 0), `search.search_C` with the torch solver, then `linear.fit` on all rows warm-started
from the search's probe at the chosen C.  Printed: wall times, L-BFGS iterations, the memory plan
and peak memory (CUDA: max allocated; CPU: the process's peak RSS), and the refit's time per
iteration against two matmuls of its shape (one L-BFGS step's work: logits, gradient), measured on
the device and at the device's nominal dense rates where known.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchsets
import numpy as np
import torch

from clipprobe import params
from clipprobe.devices import pick_device
from clipprobe.errors import ClipprobeError
from clipprobe.probe import linear, search, torch_solver, validation

IMAGENET = dict(n=1_281_167, d=1024, k=1000, n_test=50_000)  # ILSVRC-2012 train images, val as test
# expected distance between two class means, in noise standard deviations: ~72% Bayes top-1 at 1000 classes
SEPARATION = 5.5
CHUNK = 2**16  # rows generated per seed
CACHE = Path(__file__).resolve().parent / ".cache"

# Nominal dense (no sparsity) peak rates, TFLOP/s.  NVIDIA H100 Tensor Core GPU datasheet (2023):
# H100 SXM FP32 67, TF32 989 and BF16 1,979 "with sparsity" (dense: half); H100 PCIe 51 / 756 / 1,513.
# NVIDIA H200 datasheet (2024): the same compute as H100 SXM.  NVIDIA A100 datasheet (2021): FP32 19.5,
# TF32 156, BF16 312 (dense).
NOMINAL = {"H200": {"fp32": 67, "tf32": 494.5, "bf16": 989.5},
           "H100 PCIe": {"fp32": 51, "tf32": 378, "bf16": 756.5},
           "H100": {"fp32": 67, "tf32": 494.5, "bf16": 989.5},
           "A100": {"fp32": 19.5, "tf32": 156, "bf16": 312}}


def synthetic(n: int, n_test: int, d: int, k: int, seed: int = 0):
    """(x, y, x_test, y_test, bayes_test_top1): class means + noise, scaled and shifted."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d), dtype=np.float32) * np.float32(SEPARATION / math.sqrt(2 * d))
    scales = np.exp(rng.uniform(math.log(0.05), 0, d)).astype(np.float32)
    offset = rng.standard_normal(d, dtype=np.float32)
    y_all = rng.permutation(np.arange(n + n_test) % k)   # every class equally often (to one)
    x_all = np.empty((n + n_test, d), np.float32)

    def fill(i):
        s, e = i * CHUNK, min((i + 1) * CHUNK, len(y_all))
        rows = np.random.default_rng([seed, i]).standard_normal((e - s, d), dtype=np.float32)
        rows += means[y_all[s:e]]
        rows *= scales
        rows += offset
        x_all[s:e] = rows

    with ThreadPoolExecutor(os.cpu_count()) as pool:   # numpy's generators release the GIL
        list(pool.map(fill, range(math.ceil(len(y_all) / CHUNK))))
    x_test, y_test = x_all[n:], y_all[n:]
    unscaled = torch.from_numpy((x_test - offset) / scales)
    m = torch.from_numpy(means)
    nearest = ((m * m).sum(1) - 2 * unscaled @ m.T).argmin(1).numpy()  # Bayes: the nearest mean
    return x_all[:n], y_all[:n], x_test, y_test, float(np.mean(nearest == y_test) * 100)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes(device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KB on Linux


def two_matmuls(Z: torch.Tensor, k: int, repeats: int = 3) -> float:
    """Seconds for one L-BFGS step's two matmuls on Z's device: logits Z @ W.T, gradient G.T @ Z."""
    W = torch.randn(k, Z.shape[1], dtype=Z.dtype, device=Z.device)
    G = torch.empty(Z.shape[0], k, dtype=Z.dtype, device=Z.device)

    def both():
        torch.mm(Z, W.T, out=G)
        return G.T @ Z

    both()  # warm-up: the BLAS picks its kernels
    return min(timed(both, Z.device)[0] for _ in range(repeats))


def nominal(device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    return next((rates for key, rates in NOMINAL.items() if key in name), {})


def roofline(per_iter: float, Z: torch.Tensor, k: int, device) -> None:
    n, d = Z.shape
    flop = 2 * 2 * n * d * k
    measured = two_matmuls(Z, k)
    print(f"two matmuls of that shape ({flop / 1e12:.3g} TFLOP, {str(Z.dtype)[6:]}): measured {measured * 1e3:.1f} ms "
          f"({flop / measured / 1e12:.3g} TFLOP/s); time per iteration / that: {per_iter / measured:.2f}x")
    for kind, rate in nominal(device).items():
        ideal = flop / (rate * 1e12)
        print(f"  at the nominal dense {kind} rate ({rate:g} TFLOP/s, NVIDIA datasheet): {ideal * 1e3:.1f} ms; "
              f"time per iteration / that: {per_iter / ideal:.2f}x")


def counting(problem: torch_solver.Problem) -> list[int]:
    """Count the problem's objective evaluations (L-BFGS's line search may take more than one per iteration)."""
    calls, loss_grad = [0], problem.loss_grad

    def counted(*args):
        calls[0] += 1
        return loss_grad(*args)

    problem.loss_grad = counted
    return calls


def describe(plan: torch_solver.Plan) -> str:
    gb = torch_solver.fmt_bytes
    return (f"budget {gb(plan.budget)}, Z {gb(plan.n * plan.d * plan.itemsize)}, {plan.chunks} chunk(s) of "
            f"{plan.rows} rows per step, build in chunks of {plan.build_rows}, planned peak {gb(plan.peak)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of ImageNet's rows (train and test)")
    ap.add_argument("--n", type=int, help="training rows (default: 1,281,167 x scale)")
    ap.add_argument("--d", type=int, default=IMAGENET["d"], help="features (default 1024)")
    ap.add_argument("--k", type=int, default=IMAGENET["k"], help="classes (default 1000)")
    ap.add_argument("--n-test", type=int, help="test rows (default: 50,000 x n / 1,281,167, at least k)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", choices=tuple(benchsets.SETS),
                    help="the probe benchmark's Fashion-MNIST features instead (built into bench/.cache/ if missing)")
    ap.add_argument("--device", default="auto", help="train.device")
    ap.add_argument("--memory", default="auto", help="train.memory: auto, bytes, or e.g. 8GB")
    ap.add_argument("--max-iter", type=int, default=1000, help="train.max_iter")
    ap.add_argument("--fit", type=float, metavar="C", help="one cold fit at C on all rows instead of the protocol")
    ap.add_argument("--tf32", action="store_true",
                    help="CUDA: let float32 matmuls use TF32 (not clipprobe's default; to measure what it would give)")
    a = ap.parse_args()
    device = pick_device(a.device, param="--device")
    memory = params.memory_bytes(a.memory)
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True

    n = a.n or round(IMAGENET["n"] * a.scale)
    n_test = a.n_test or max(a.k, round(IMAGENET["n_test"] * n / IMAGENET["n"]))
    t, data = timed(lambda: benchsets.load(a.real, CACHE) if a.real else synthetic(n, n_test, a.d, a.k, a.seed),
                    device)
    x, y, x_te, y_te = data[:4]
    n, d, k = *x.shape, len(np.unique(y))
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"{f'benchmark set {a.real}' if a.real else 'synthetic'}: {n:,} x {d} float32 train, {len(y_te):,} test, "
          f"{k} classes (made in {t:.1f}s); {where}; train.memory {a.memory}" + (", TF32 matmuls" if a.tf32 else ""),
          flush=True)
    base = rss_bytes() if device.type == "cpu" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    if a.fit is not None:
        t_build, problem = timed(lambda: torch_solver.Problem(x, y, a.device, memory), device)
        evals = counting(problem)
        t_fit, clf = timed(lambda: linear.fit(problem, None, a.fit, a.max_iter, solver="torch"), device)
        iters, C, t_total = int(np.max(clf.n_iter_)), a.fit, t_build + t_fit
        print(f"one fit at C = {C:g}: build {t_build:.1f}s, fit {t_fit:.1f}s, {iters} L-BFGS iterations")
    else:
        tr, val = validation.validation_split(y, 0.2, 0)
        t_search, s = timed(lambda: search.search_C(x[tr], y[tr], x[val], y[val], a.max_iter, solver="torch",
                                                   device=a.device, memory=memory), device)
        search_iters = sum(it for _, _, it in s.fits)
        print(f"search: {s.n_fits} fits, {search_iters} L-BFGS iterations, {t_search:.1f}s (C = {s.C:.5g}, "
              f"validation top-1 {s.val_score:.2f}%" + (", coarse grid stopped past the peak)" if s.early_exit else ")"),
              flush=True)
        t_build, problem = timed(lambda: torch_solver.Problem(x, y, a.device, memory), device)
        evals = counting(problem)
        t_fit, clf = timed(lambda: linear.fit(problem, None, s.C, a.max_iter, solver="torch", start=s.probe), device)
        iters, C, t_total = int(np.max(clf.n_iter_)), s.C, t_search + t_build + t_fit
        print(f"refit on all {n:,} rows: build {t_build:.1f}s, fit {t_fit:.1f}s, {iters} L-BFGS iterations "
              f"(warm-started)")
        print(f"search + refit: {t_total:.1f}s wall, {search_iters + iters} L-BFGS iterations")
    peak = peak_bytes(device)
    top1 = float(np.mean(clf.predict(x_te) == y_te) * 100)
    print(f"test top-1 {top1:.2f}% at C = {C:.5g}" + ("" if a.real else f"; Bayes-optimal {data[4]:.2f}%")
          + f"; chance {100 / k:.2f}%")
    print(f"memory plan of the {'fit' if a.fit is not None else 'refit'}: {describe(problem.plan)}")
    if device.type == "cuda":
        print(f"peak device memory: {torch_solver.fmt_bytes(peak)} (torch.cuda.max_memory_allocated)")
    else:
        gb = torch_solver.fmt_bytes
        print(f"peak RSS: {gb(peak)}, of which {gb(peak - base)} above the {gb(base)} held before the "
              f"{'fit' if a.fit is not None else 'search'} (features included)")
    if iters:
        per_iter = t_fit / iters
        print(f"{'fit' if a.fit is not None else 'refit'} ({n:,} x {d} x {k}): {per_iter * 1e3:.1f} ms per L-BFGS "
              f"iteration, {evals[0]} evaluations of the objective in {iters} iterations "
              f"({t_fit / evals[0] * 1e3:.1f} ms each)")
        roofline(per_iter, problem.Z, k, device)


if __name__ == "__main__":
    try:
        main()
    except ClipprobeError as e:
        sys.exit(f"error: {e}")
