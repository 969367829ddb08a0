"""The torch solver: scikit-learn's multinomial logistic regression by preconditioned L-BFGS.

Full-batch: scipy's L-BFGS-B over a loss and gradient computed in torch (CPU or GPU).

The objective is scikit-learn's exactly: mean cross-entropy + ||W||^2 / (2 C n), intercept
unpenalised.  What differs is only the optimiser's coordinates, each change exact:

- the features are centred (x - mean): with an unpenalised intercept that is a
  reparametrisation (b' = b + mean @ W.T), undone on the way out;
- W is optimised as V with W = V D U^T, where U D^-2 U^T ~ (C c X^T X + I) / (C n) is the
  objective's curvature with every sample's softmax curvature guessed as c, from one
  eigendecomposition of the centred Gram matrix (`Problem`, shared by every C of a search;
  for n <= d, as in few-shot, from the SVD of the centred rows instead).
  The minimiser in W is the same; L-BFGS's steps see a better conditioned problem.
- only the directions of U with a nonzero eigenvalue are kept (r of them, r < n where n <= d):
  in the others the features are constant, so only the penalty acts there and the optimum is 0.

L-BFGS is scipy's L-BFGS-B (10 corrections; its state and the loss in float64: in float32 the
loss-change test, 64 machine epsilons, stopped fits visibly short of the optimum), driving the
loss and gradient written out by hand in torch; on the small problems of a few-shot search
torch.optim.LBFGS's many tiny tensor ops per step cost more than the step's arithmetic.
Each step's two matmuls and its softmax run in the features' precision (float32 from the
feature store: half the memory traffic), the sums over rows accumulated in float64; no TF32,
bf16 or fp16, whose 8-11 bit mantissas would blur the gradient the stopping rule reads (bf16
features failed the agreement tests).  It stops at max |gradient in V| <= tol, at that loss
change, or at max_iter.  In V the curvature is ~1, so the gradient measures the distance
to the optimum; on the benchmark (bench/probe.py) tol = 1e-5 gave the validation top-1 of fits
converged to 1e-8 within one image at every C checked (1 to 316, where its choice is made); 1e-4
missed by up to 2 images.  The result is a fitted `LogisticRegression`, so nothing downstream changes.

Memory is planned (`Plan`): the features in the eigenbasis (Z) stay on the device; the Gram
matrix, Z, and each step's logits and gradient are computed over row chunks sized to a budget
(`train.memory`), so nothing of size n x k and no float64 copy of the features need fit at once.
Chunking changes only the order of the sums, not the objective or its minimiser.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import threadpoolctl
import torch
from sklearn.linear_model import LogisticRegression

from clipprobe.devices import available_ram, pick_device
from clipprobe.errors import ClipprobeError
from clipprobe.probe.logreg import with_coefficients

TOL = 1e-5  # max |gradient| in the preconditioned coordinates; see the module docstring
CURVATURE = 0.05  # the guessed softmax curvature per sample in the preconditioner (measured: 0.01-0.25 all work)
F64 = 8  # bytes
# k x (d + 1) float64 arrays held through a fit: L-BFGS's 10 step/gradient pairs, its direction,
# gradients, line-search copies, the weights and the closure's accumulators (24 counted, 8 spare)
STATE_ARRAYS = 32
EIGH_ARRAYS = 5  # d x d float64 arrays while the eigenbasis is built: Gram, eigenvectors, workspace
RUNTIME = 2**27  # BLAS and cuBLAS workspaces and buffers: ~0.1 GB above the arrays counted, measured on CPU
BUILD_ROWS = 2**16  # the most rows per chunk of the build: larger ones gain nothing, and at d = 1024 take 1.3 GB


# ---------------------------------------------------------------- memory

def free_memory(device: torch.device) -> int:
    """Bytes free on the device: CUDA's free memory plus what torch's allocator holds unused; RAM on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return available_ram()


def budget(memory: int | str, device: torch.device) -> int:
    """train.memory (as `params.memory_bytes` gives it) in bytes; `auto` = the device's free memory
    less a margin (a tenth, at least 512 MiB)."""
    if memory != "auto":
        return memory
    free = free_memory(device)
    return free - max(free // 10, 512 * 2**20)


def fmt_bytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if abs(n_bytes) >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


@dataclass(frozen=True)
class Plan:
    """How a problem of n rows, d features and k classes uses `budget` bytes of device memory:
    rows per chunk of the eigenbasis build and of each L-BFGS step.  Bytes per row are what the
    chunk's temporaries take: the build uploads a chunk (itemsize), centres it in float64 and
    rotates it (float64); a step's logits (features' precision) are turned in place into the
    gradient of the loss in the logits.  The k x 8 bytes per row of the float64 copy of the
    logits that steps made before their softmax ran in float32 are still counted: a margin, kept
    until the ImageNet-scale memory figures are measured again."""
    n: int
    d: int
    k: int
    itemsize: int
    budget: int

    @property
    def fixed(self) -> int:
        """Held through every fit: Z, the labels, the eigenbasis, L-BFGS's arrays, the runtime's buffers."""
        return (self.n * (self.d + 1) * self.itemsize + self.n * 8 + self.d * self.d * F64
                + STATE_ARRAYS * self.k * (self.d + 1) * F64 + RUNTIME)

    @property
    def build_fixed(self) -> int:
        return self.n * (self.d + 1) * self.itemsize + self.n * 8 + EIGH_ARRAYS * self.d * self.d * F64 + RUNTIME

    @property
    def row_bytes(self) -> int:
        return self.k * (F64 + self.itemsize) + 64

    @property
    def build_row_bytes(self) -> int:
        return self.d * (2 * F64 + self.itemsize)

    @property
    def rows(self) -> int:
        """Rows per chunk of a step: as few chunks as the budget allows, of equal size (the last one
        excepted), so the peak is no higher than the chunk count needs."""
        affordable = min(self.n, max(0, self.budget - self.fixed) // self.row_bytes)
        return math.ceil(self.n / math.ceil(self.n / affordable)) if affordable else 0

    @property
    def build_rows(self) -> int:
        return min(self.n, BUILD_ROWS, max(0, self.budget - self.build_fixed) // self.build_row_bytes)

    @property
    def chunks(self) -> int:
        return math.ceil(self.n / self.rows)

    @property
    def peak(self) -> int:
        """The most this plan has allocated at once."""
        return max(self.fixed + self.rows * self.row_bytes, self.build_fixed + self.build_rows * self.build_row_bytes)

    def check(self, where: str) -> "Plan":
        """Stop, naming train.memory, unless one row chunk of each phase fits."""
        need = max(self.fixed + self.row_bytes, self.build_fixed + self.build_row_bytes)
        if self.budget < need:
            raise ClipprobeError(
                f"train.memory: {fmt_bytes(self.budget)} is too small for the torch solver on {self.n} x {self.d} "
                f"features and {self.k} classes, which needs at least {fmt_bytes(need)} on {where} (the features in "
                f"the eigenbasis take {fmt_bytes(self.n * self.d * self.itemsize)}); raise train.memory, free memory "
                f"there, or set train.device to a device with more")
        return self


class Problem:
    """The features and labels of one fit (or every fit of a C search), centred and rotated
    into the eigenbasis of their Gram matrix once, in row chunks sized by a memory budget."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: str = "auto", memory: int | str = "auto"):
        self.device = pick_device(device, param="train.device")
        self.classes, target = np.unique(y, return_inverse=True)
        self.n, self.d = x.shape
        # centred features in the eigenbasis, in the features' precision: the two matmuls per
        # L-BFGS step run in float32 for float32 features (half the memory traffic of float64)
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        self.plan = Plan(self.n, self.d, len(self.classes), dtype.itemsize,
                         budget(memory, self.device)).check(str(self.device))
        rows = self.plan.build_rows
        chunks = [(s, min(s + rows, self.n)) for s in range(0, self.n, rows)]
        f64 = torch.float64

        def centred(s, e, mean):  # a float64 copy of one chunk on the device, less `mean`
            return torch.from_numpy(np.ascontiguousarray(x[s:e])).to(self.device, f64, copy=True).sub_(mean)

        if self.n <= self.d:  # few rows (few-shot): the centred rows' SVD gives the same basis, without eigh's d^3
            c = centred(0, self.n, 0)
            self.mean = c.mean(0)
            _, sv, Vh = torch.linalg.svd(c.sub_(self.mean), full_matrices=False)
            self.s, self.U = sv.square(), Vh.T
        else:
            # Gram matrix of the centred features, float64 (the small eigenvalues matter), in one pass:
            # accumulated about the first chunk's mean, then corrected to the mean of all rows
            shift = centred(*chunks[0], 0).mean(0)
            total = torch.zeros(self.d, dtype=f64, device=self.device)
            gram = torch.zeros((self.d, self.d), dtype=f64, device=self.device)
            for s, e in chunks:
                c = centred(s, e, shift)
                total += c.sum(0)
                gram.addmm_(c.T, c)
                del c
            delta = total / self.n
            self.mean = shift + delta
            gram.sub_(torch.outer(delta, delta), alpha=self.n)
            self.s, self.U = torch.linalg.eigh(gram)
            del gram
        # only the span of the centred features: a direction with a (numerically) zero eigenvalue
        # carries the penalty alone, whose optimum there is 0 (always the case for n <= d: few-shot)
        keep = self.s > self.s.max() * self.d * torch.finfo(f64).eps
        self.s, self.U = self.s[keep], self.U[:, keep]
        self.r = len(self.s)
        # Z = [centred features in the eigenbasis | 1]: the ones column carries the intercept, so a
        # step is two matmuls, and the intercept's gradient (the softmax's column sums) comes with them
        self.Z = torch.ones((self.n, self.r + 1), dtype=dtype, device=self.device)
        for s, e in chunks:
            self.Z[s:e, :self.r] = centred(s, e, self.mean) @ self.U
        self.Y = torch.as_tensor(target, device=self.device)[:, None]
        # the step's row chunks, as views made once: a few-shot step is ~20 tensor ops, each costing microseconds
        rows = self.plan.rows
        self.chunks = [(self.Z[s:s + rows], self.Y[s:s + rows]) for s in range(0, self.n, rows)]
        self.minus_one = torch.full((rows, 1), -1, dtype=dtype, device=self.device)

    def scale(self, C: float) -> torch.Tensor:
        """D: W' = V * D, so that L-BFGS sees curvature ~ I."""
        return torch.sqrt(C * self.n / (C * CURVATURE * self.s + 1))

    def loss_grad(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy of logits Z @ W.T (W's last column: the intercepts) and its gradient
        in W (float64), over the row chunks of `plan.rows`."""
        f64 = torch.float64
        Wc = W.to(self.Z.dtype).T
        loss = G = None
        for Z, Y in self.chunks:
            L = Z @ Wc
            top = L.amax(1, keepdim=True)  # by hand: torch.logsumexp takes 3x as long on few-shot sizes
            picked = L.gather(1, Y)
            P = L.sub_(top).exp_()
            total = P.sum(1, keepdim=True)
            part = total.log().add_(top).sub_(picked).sum(dtype=f64)
            P.div_(total)  # softmax; less the one-hot labels: the loss's gradient in the logits
            P.scatter_add_(1, Y, self.minus_one[:len(Y)])
            grad = (P.T @ Z).to(f64)  # summed in the features' precision: no float64 copy of P
            del L, P
            loss, G = (part, grad) if G is None else (loss + part, G.add_(grad))
        return loss, G


@functools.cache
def _blas() -> threadpoolctl.ThreadpoolController:
    """The loaded BLAS libraries, found once (a search takes ~3 ms per fit)."""
    return threadpoolctl.ThreadpoolController()


def fit(x: np.ndarray | Problem, y: np.ndarray | None, C: float, max_iter: int = 1000,
        start: LogisticRegression | None = None, device: str = "auto", tol: float = TOL,
        memory: int | str = "auto") -> LogisticRegression:
    p = x if isinstance(x, Problem) else Problem(x, y, device, memory)
    K, r = len(p.classes), p.r
    f64 = torch.float64
    b_scale = 1 / CURVATURE ** 0.5
    # V holds [W' | b']: W = V[:, :r] D U^T, intercept b = V[:, r] b_scale - W @ mean
    D = torch.cat([p.scale(C), torch.tensor([b_scale], dtype=f64, device=p.device)])
    penalty = D.square() / (2 * C * p.n)
    penalty[r] = 0  # the intercept is not penalised
    D_mean = D / p.n  # the chain rule's D and the mean's 1/n in one factor
    v0 = torch.zeros((K, r + 1), dtype=f64, device=p.device)
    if start is not None:  # into the new coordinates: W' = W U, b' = b + mean @ W.T
        W = torch.as_tensor(start.coef_, dtype=f64, device=p.device)
        v0[:, :r] = W @ p.U
        v0[:, r] = torch.as_tensor(start.intercept_, dtype=f64, device=p.device) + W @ p.mean
        v0 /= D

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective in V and its gradient, by hand: no autograd graph of size n x k."""
        v = torch.from_numpy(flat).view(K, r + 1).to(p.device)  # zero-copy on CPU
        loss, G = p.loss_grad(v * D)
        vp = v * penalty
        value = float(loss / p.n + torch.dot(vp.view(-1), v.view(-1)))  # one device sync, not two
        return value, G.mul_(D_mean).add_(vp, alpha=2).cpu().numpy().ravel()

    # scipy's own BLAS on one thread: its vector updates are small, and threads it wakes on every
    # one of them cost ~6 ms per iteration on 2 shared cores (torch's MKL threads are left alone)
    with _blas().limit(limits=1, user_api="blas"):
        res = scipy.optimize.minimize(objective, v0.cpu().numpy().ravel(), jac=True, method="L-BFGS-B",
                                      options={"maxcor": 10, "gtol": tol, "ftol": 64 * np.finfo(np.float64).eps,
                                               "maxiter": max_iter, "maxfun": max_iter * 50})
    v = torch.from_numpy(res.x).view(K, r + 1).to(p.device) * D
    W = v[:, :r] @ p.U.T
    b = v[:, r] - W @ p.mean
    b = b.cpu().numpy()  # softmax ignores a shared shift; scikit-learn's intercepts sum to 0
    clf = with_coefficients(W.cpu().numpy(), b - b.mean(), p.classes, C=C, solver="lbfgs", max_iter=max_iter)
    clf.n_iter_ = np.asarray([res.nit], dtype=np.int32)
    return clf
