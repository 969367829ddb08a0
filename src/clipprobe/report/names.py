"""How reports and figures name datasets, models and weights: a path by its file or folder name."""

from __future__ import annotations

from pathlib import PurePath

_FILE_SUFFIXES = (".json", ".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def short(value: str, dataset: bool = False) -> str:
    """The name of a path (an ImageFolder root, a model config, a checkpoint); other values as they are.

    Dataset names in the registry never hold a "/"; model names may (`ViT-B/32`), so a model
    or weights value counts as a path by its file suffix or a leading `/`, `.` or `~` (after the
    `hf:` of a Hugging Face model directory, which stays).  A `wds:` shard pattern shows as its
    dataset's folder, an `hf:` dataset as its folder or repo name."""
    value = str(value)
    for source in ("wds:", "hf:") if dataset else ():
        if value.startswith(source):
            rest = value[len(source):].split("{")[0] if source == "wds:" else value[len(source):]
            folder = PurePath(rest if source == "hf:" or rest.endswith("/") else PurePath(rest).parent).name
            return f"{source}{folder}" if folder else value
    prefix = "hf:" if not dataset and value.startswith("hf:") else ""
    rest = value[len(prefix):]
    is_path = "/" in rest if dataset else \
        rest.endswith(_FILE_SUFFIXES) or rest.startswith(("/", ".", "~"))
    return prefix + (PurePath(rest).name or rest) if is_path else value


def labels(values, dataset: bool = False) -> dict[str, str]:
    """Short labels for values, the full value wherever two values would share a label."""
    by_label = {}
    for v in sorted(set(values)):
        by_label.setdefault(short(v, dataset), []).append(v)
    return {v: (label if len(vs) == 1 else v) for label, vs in by_label.items() for v in vs}


_METRICS = {"top1": "top-1", "top5": "top-5", "mean_per_class_recall": "mean per-class recall", "map11": "11-point mAP"}


def metric(name: str) -> str:
    """A metric as a reader says it: `top1` -> top-1, `map11` -> 11-point mAP."""
    return _METRICS.get(name, name.replace("_", " "))
