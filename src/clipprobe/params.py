"""The one place that reads and validates params.yaml.

Every stage gets a frozen `Params`; a wrong key, type or range stops the stage with
one line naming the param, the value and what is allowed.  What a value names (a dataset of the
registry, a model) is checked where it is read, by the `inputs` stage, which runs first: importing
the registry here would put it into every stage's closure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from clipprobe.errors import ClipprobeError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# what the features are; each model source takes some (encode/openclip, timm_models, hf_models) and
# resolves auto to its documented default: projection for open_clip, pre_logits for timm and hf
LAYERS = ("auto", "projection", "pre_projection", "pre_logits", "cls_avgpatch")
SOLVERS = ("sklearn", "torch")
ENGINES = ("local", "ray")
# C outside these bounds changes no fit (beyond 1e12 the L2 term is below float32 resolution of the
# loss: no regularisation; below 1e-12 the weights are ~1e-11: the class prior), yet C * n or
# 1 / (C * n) can overflow the solvers (C: 1e308 made the torch solver spin forever). The CLIP
# paper's search spans 1e-6..1e6.
C_MIN, C_MAX = 1e-12, 1e12


@dataclass(frozen=True)
class SplitNames:
    """The source's names of the paper's splits, for `wds:` and `hf:` sources (val: optional)."""
    train: str = "train"
    val: str | None = "validation"
    test: str = "test"


@dataclass(frozen=True)
class DataParams:
    name: str = "cifar10"
    root: str = "auto"          # see clipprobe.data.root
    limit_per_class: int | None = None
    skip_corrupt: bool = False
    image_column: str = "image"   # hf: the column of the images
    label_column: str = "label"   # hf: the column of the labels
    splits: SplitNames = SplitNames()


@dataclass(frozen=True)
class ModelParams:
    name: str = "ViT-B/32"
    weights: str = "openai"


@dataclass(frozen=True)
class RayParams:
    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0


@dataclass(frozen=True)
class ExtractParams:
    batch_size: int | str = "auto"
    device: str = "auto"
    precision: str = "auto"
    layer: str = "auto"
    workers: int | str = "auto"
    shard_size: int = 10000
    engine: str = "local"
    ray: RayParams = RayParams()


@dataclass(frozen=True)
class TuneParams:
    val_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class TrainParams:
    max_iter: int = 1000
    solver: str = "torch"
    device: str = "auto"
    memory: int | str = "auto"


@dataclass(frozen=True)
class FewshotParams:
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    seeds: int = 3


@dataclass(frozen=True)
class ZeroshotParams:
    templates: str = "src/clipprobe/prompts.json"


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    extract: ExtractParams
    C: float | str
    tune: TuneParams
    train: TrainParams
    fewshot: FewshotParams = FewshotParams()
    zeroshot: ZeroshotParams = ZeroshotParams()


def _fail(key: str, value, allowed: str):
    raise ClipprobeError(f"params.yaml: {key} must be {allowed}, got {value!r}")


def _int(key, v, minimum):
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        _fail(key, v, f"an integer >= {minimum}")
    return v


def _check_data(p: DataParams) -> None:
    if not isinstance(p.name, str) or not p.name:   # which names exist: clipprobe.data.inputs
        _fail("data.name", p.name, "a dataset name (see the README's Datasets), an ImageFolder path, "
              "wds:<pattern> or hf:<dataset>")
    if not isinstance(p.root, str) or not p.root:
        _fail("data.root", p.root, "auto (the user's cache directory) or a directory path")
    # auto: clipprobe.data.root's cache directory (not imported here: every stage imports params)
    for d in () if p.root == "auto" else (Path(p.root), *Path(p.root).parents):  # what exists: a folder
        if d.exists():
            if not d.is_dir():
                _fail("data.root", p.root, f"a directory (created if missing), but {d} is a file; "
                      "point it at a folder")
            break
    if p.limit_per_class is not None:
        _int("data.limit_per_class", p.limit_per_class, 1)
    if not isinstance(p.skip_corrupt, bool):
        _fail("data.skip_corrupt", p.skip_corrupt, "true or false")
    for key in ("image_column", "label_column"):
        if not isinstance(getattr(p, key), str) or not getattr(p, key):
            _fail(f"data.{key}", getattr(p, key), "a column name of the hf: dataset")


def _check_splits(p: SplitNames) -> SplitNames:
    p = replace(p, val=p.val or None)   # `-S data.splits.val=` writes an empty string: no val split
    for key in ("train", "val", "test"):
        v = getattr(p, key)
        if not (isinstance(v, str) and v and "/" not in v) and not (key == "val" and v is None):
            _fail(f"data.splits.{key}", v, "the source's name of that split (no /)"
                  + (", or empty for none" if key == "val" else ""))
    return p


def _check_model(p: ModelParams) -> None:
    for key in ("name", "weights"):
        v = getattr(p, key)
        if not isinstance(v, str) or not v:
            _fail(f"model.{key}", v, "a non-empty string")


def _check_extract(p: ExtractParams) -> None:
    for key, minimum in (("batch_size", 1), ("workers", 0)):
        v = getattr(p, key)
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            _fail(f"extract.{key}", v, f"auto or an integer >= {minimum}")
    _int("extract.shard_size", p.shard_size, 1)
    _device("extract.device", p.device)
    if p.precision not in PRECISIONS:
        _fail("extract.precision", p.precision, " | ".join(PRECISIONS))
    if p.layer not in LAYERS:
        _fail("extract.layer", p.layer, " | ".join(LAYERS))
    if p.engine not in ENGINES:
        _fail("extract.engine", p.engine, " | ".join(ENGINES))
    if p.engine == "ray":
        ray_device(p)


def _check_ray(p: RayParams) -> None:
    if p.address is not None and not isinstance(p.address, str):
        _fail("extract.ray.address", p.address, "auto, a cluster address, or empty for a local Ray")
    _int("extract.ray.actors", p.actors, 1)
    g = p.gpus_per_actor
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < math.inf:
        _fail("extract.ray.gpus_per_actor", g, "a number >= 0 (fractions share a GPU)")


def ray_device(p: ExtractParams) -> str:
    """The device of Ray actors: Ray hands GPUs to actors, so extract.device can only agree."""
    device = "cuda" if p.ray.gpus_per_actor > 0 else "cpu"
    if p.device not in ("auto", device):
        _fail("extract.device", p.device, f"auto or {device} with extract.engine: ray and "
              f"extract.ray.gpus_per_actor: {p.ray.gpus_per_actor} (Ray assigns the GPUs)")
    return device


def _device(key, dev):
    if not isinstance(dev, str) or not (dev in DEVICES or (dev.startswith("cuda:") and dev[5:].isdigit())):
        _fail(key, dev, "auto, cpu, cuda or cuda:N")


def _check_C(c):
    if c == "auto":
        return c
    if isinstance(c, str):  # YAML reads 1e-3 as a string: accept numeric strings
        try:
            c = float(c)
        except ValueError:
            _fail("C", c, "auto or a positive number")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not C_MIN <= c <= C_MAX:
        _fail("C", c, f"auto or a number from {C_MIN:g} to {C_MAX:g} (beyond them no fit changes, and "
              "C * n overflows the solver)")
    return float(c)


def _check_tune(p: TuneParams) -> None:
    v = p.val_fraction
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        _fail("tune.val_fraction", v, "a number strictly between 0 and 1")
    _int("tune.seed", p.seed, 0)


# decimal and binary multiples: 8GB = 8e9 bytes, 8GiB = 8 * 2**30
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_bytes(value) -> int | str:
    """`auto`, or a positive number of bytes given as an integer or a size such as 8GB or 512MiB."""
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", value) if isinstance(value, str) else None
    if m and m[2].lower() in _SIZE_UNITS and int(float(m[1]) * _SIZE_UNITS[m[2].lower()]) > 0:
        return int(float(m[1]) * _SIZE_UNITS[m[2].lower()])
    _fail("train.memory", value, "auto (the device's free memory less a margin), a number of bytes, "
          "or a size such as 8GB or 512MiB")


def _check_train(p: TrainParams) -> TrainParams:
    _int("train.max_iter", p.max_iter, 1)
    if p.solver not in SOLVERS:
        _fail("train.solver", p.solver, " | ".join(SOLVERS))
    _device("train.device", p.device)
    return replace(p, memory=memory_bytes(p.memory))


def _check_fewshot(p: FewshotParams) -> None:
    shots = p.shots
    if not isinstance(shots, (list, tuple)) or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                                                   for k in shots):
        _fail("fewshot.shots", shots, "a list of integers >= 1 (images per class), or [] to turn few-shot off")
    if len(set(shots)) != len(shots):
        _fail("fewshot.shots", shots, "a list without repeats")
    _int("fewshot.seeds", p.seeds, 1)


def _check_zeroshot(p: ZeroshotParams) -> None:
    if not isinstance(p.templates, str) or not p.templates:
        _fail("zeroshot.templates", p.templates, "the path of a prompts file (class names and templates)")
    if p.templates != ZeroshotParams.templates and not Path(p.templates).is_file():  # the default ships
        _fail("zeroshot.templates", p.templates, f"an existing prompts file (default {ZeroshotParams.templates})")


_SECTIONS = {"data": (DataParams, _check_data), "model": (ModelParams, _check_model),
             "extract": (ExtractParams, _check_extract), "tune": (TuneParams, _check_tune),
             "train": (TrainParams, _check_train), "fewshot": (FewshotParams, _check_fewshot),
             "zeroshot": (ZeroshotParams, _check_zeroshot)}
_SUBSECTIONS = {"extract.ray": (RayParams, _check_ray), "data.splits": (SplitNames, _check_splits)}


def _section(name: str, raw, table=_SECTIONS):
    cls, check = table[name]
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        _fail(name, raw, "a mapping of keys")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ClipprobeError(f"params.yaml: unknown key {name}.{unknown[0]}; "
                             f"known keys of {name}: {', '.join(sorted(known))}")
    nested = {k: _section(f"{name}.{k}", v, _SUBSECTIONS) for k, v in raw.items()
              if f"{name}.{k}" in _SUBSECTIONS}
    section = cls(**{**raw, **nested})
    return check(section) or section  # a check may return the section with values normalised


def parse(raw: dict) -> Params:
    """Validate a params mapping (as read from params.yaml) into `Params`."""
    if not isinstance(raw, dict):
        raise ClipprobeError("params.yaml: expected a mapping at the top level")
    known = [f.name for f in fields(Params)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ClipprobeError(f"params.yaml: unknown key {unknown[0]}; known keys: {', '.join(known)}")
    sections = {name: _section(name, raw.get(name)) for name in _SECTIONS}
    return Params(C=_check_C(raw.get("C", "auto")), **sections)


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ClipprobeError(f"{path}: params file not found; run from the project root")
    text = path.read_text()
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ClipprobeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if duplicate:
        key, line = duplicate
        raise ClipprobeError(f"{path}: key {key} appears twice (again on line {line}); keep one (YAML loaders "
                             "disagree on which wins, and DVC refuses the file)")
    return parse(raw or {})


def _duplicate_key(node, prefix: str = "") -> tuple[str, int] | None:
    """The first key (dotted path, line) that a mapping of the YAML node tree holds twice."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            if name in seen:
                return name, key.start_mark.line + 1
            seen.add(name)
            found = _duplicate_key(value, f"{name}.")
            if found:
                return found
    return None
