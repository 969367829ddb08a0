"""Checkpoint files as a model source loads them, and why one does not fit a model.

OpenAI's TorchScript `.pt` (only when the user names
one) or a torch state dict read with `weights_only=True` (no pickle from files the user did not make),
and what keeps a state dict from fitting a model, in one line.  Weights holding NaN or inf are refused
(whatever their source): they would give non-finite features, and a chance-level score from them."""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import torch

from clipprobe.errors import ClipprobeError


def is_torchscript(path: Path) -> bool:
    """OpenAI's `.pt` files are TorchScript zip archives with a code/ folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def read(path: Path) -> dict:
    if is_torchscript(path):  # loaded only because the user named this OpenAI .pt file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
            try:
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            except Exception as e:  # torch raises RuntimeError and others for a broken archive
                raise ClipprobeError(f"model.weights={path}: a zip with code/ like OpenAI's TorchScript .pt, but "
                                     f"torch.jit.load cannot read it ({first_line(e)}); download the file again, "
                                     "or give a torch state dict") from None
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ClipprobeError(f"model.weights={path}: not a readable checkpoint ({first_line(e)}); "
                                 "give an OpenAI .pt file or a torch state dict") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ClipprobeError(f"model.weights={path}: holds no state dict of tensors")
    if next(iter(state)).startswith("module."):
        state = {k[len("module."):]: v for k, v in state.items()}
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    require_finite(state, f"model.weights={path}")
    return state


def require_finite(tensors: dict, culprit: str) -> None:
    """Stop, naming the first tensor (in the state dict's order) that holds NaN or inf."""
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ClipprobeError(f"{culprit}: tensor {key} holds {bad} NaN or inf value(s) of {t.numel()}; the "
                                 "weights are broken (a diverged run, a bad conversion): use another checkpoint")


def first_line(e: Exception) -> str:
    """The gist of an exception from torch or open_clip, for a one-line error (torch appends
    boilerplate after two spaces, and styles some of it with terminal escapes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    return f"{type(e).__name__}: {re.split(r'  +', (text.splitlines() or [''])[0])[0][:120]}"


def mismatch(expected: dict, state: dict, arch: str) -> str:
    """What keeps `state` from loading into a model whose state dict is `expected` ('' if nothing)."""
    for key, tensor in expected.items():
        if key in state and state[key].shape != tensor.shape:
            return (f"size mismatch for {key}: {list(state[key].shape)} in the checkpoint, "
                    f"{list(tensor.shape)} in {arch}")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        return (f"{len(missing)} key(s) of {arch} missing from the checkpoint (e.g. {(missing or ['-'])[0]}), "
                f"{len(unexpected)} unexpected (e.g. {(unexpected or ['-'])[0]})")
    return ""
