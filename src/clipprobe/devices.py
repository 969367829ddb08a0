"""Where and in what precision torch work runs (extraction and the torch solver)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from clipprobe.errors import ClipprobeError


def pick_device(device: str, param: str = "extract.device") -> torch.device:
    """`auto` is the GPU where there is one; a CUDA device that is not here names `param`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ClipprobeError(f"{param}={device}: no such CUDA device here "
                                 f"({torch.cuda.device_count()} visible); use auto or cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls in hardware (AVX512-BF16 or AMX); elsewhere
    oneDNN emulates bf16 and it is slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def pick_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the encoder's weights and activations.

    auto: fp16 on CUDA; bf16 on a CPU with native bf16 (on 2 Sapphire Rapids cores ~1.8x
    fp32, and linear-probe accuracy within 0.2 points of fp32 features: `bench/extract.py
    --probe`); else fp32.
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise ClipprobeError("extract.precision=fp16 is for GPUs; on CPU use fp32, bf16 or auto")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def available_ram() -> int:
    """Bytes of RAM this process can still take: the system's available memory (psutil where
    installed, else /proc/meminfo, else sysconf), capped by a cgroup v2 limit."""
    try:
        import psutil
        free = psutil.virtual_memory().available
    except ImportError:
        try:
            line = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemAvailable:"))
            free = int(line.split()[1]) * 1024
        except (OSError, StopIteration):
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:  # a container's limit, which the system-wide figures do not show
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return free
