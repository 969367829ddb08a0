"""A model's size before it is built, and the refusal of one too large for this machine's memory.

Its parameters are counted on torch's meta device; the model is refused when its fp32 weights would
not fit in the memory this process can still take, and before it moves to a GPU whose free memory
cannot hold its weights in the extraction precision.  A config for a model too large for the machine otherwise allocates gigabytes for tens of seconds
before failing; on the meta device the same model is built without memory in well under a second
(a 2.5e9-parameter open_clip ViT-bigG-14: 0.25 s on 2 cores)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from clipprobe.atomic import fmt_size
from clipprobe.devices import available_ram
from clipprobe.errors import ClipprobeError

FP32 = 4  # bytes per weight: models load in fp32 on CPU


def parameters(build: Callable[[], torch.nn.Module]) -> int:
    """The number of parameters and buffers of the model `build()` makes, without allocating it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # open_clip logs "initialized randomly" for every model it builds
    try:
        with torch.device("meta"):
            model = build()
    finally:
        root.setLevel(level)
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


def require_fits(build: Callable[[], torch.nn.Module], culprit: str, loads_weights: bool) -> int:
    """Stop, naming `culprit` and the model's size, unless its fp32 weights fit in available memory
    (twice over where a checkpoint is read: the file's tensors and the model's, while one loads into
    the other).  Returns the parameter count."""
    n = parameters(build)
    need = n * FP32 * (2 if loads_weights else 1)
    free = available_ram()
    if need > free:
        raise ClipprobeError(f"{culprit}: {n:,} parameters need {fmt_size(need)} in fp32"
                             f"{' while the weights load' if loads_weights else ''}, more than the "
                             f"{fmt_size(free)} of memory available; choose a smaller model, or free memory")
    return n


def require_fits_on_device(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, culprit: str) -> None:
    """Stop, naming `culprit`, unless `model`'s weights in `dtype` fit in `device`'s free memory:
    a model too large for the GPU otherwise fails in `.to()` with a CUDA traceback."""
    if device.type != "cuda":
        return
    size = torch.empty((), dtype=dtype).element_size()
    need = sum(t.numel() * (size if t.is_floating_point() else t.element_size())
               for t in (*model.parameters(), *model.buffers()))
    free, total = torch.cuda.mem_get_info(device)
    if need > free:
        raise ClipprobeError(f"{culprit}: its weights need {fmt_size(need)} in {str(dtype).removeprefix('torch.')} "
                             f"on {device}, more than the {fmt_size(free)} free of its {fmt_size(total)}; choose a "
                             "smaller model or another GPU (extract.device), or free that GPU's memory")
