"""Which of an experiment's records it made itself, so that a number shows only under its maker.

A DVC experiment run with a target (`dvc exp run evaluate ...`) carries the other stages' files
as its baseline commit left them. A record (results/<stage>.json) belongs to the experiment when
its identity (dataset, model, weights, layer: any layer where `extract.layer` is `auto`, which each
model source resolves) and the params its protocol depends on equal the experiment's params, and the
test features it scored are the experiment's own (their fingerprint against the experiment's
`features/test/manifest.json`, where DVC's cache holds it).
"""

from __future__ import annotations

from clipprobe.results import PARAM_OF

FILES = {"evaluate": "results/evaluate.json", "zeroshot": "results/zeroshot.json", "fewshot": "results/fewshot.json"}


def flatten(d: dict, prefix: str = "") -> dict:
    """{"data": {"name": x}} -> {"data.name": x}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def same(a, b) -> bool:
    """Param values as equal as params.yaml means them: 1 and 1.0 and "1e0" are one C."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def foreign(record: dict, params: dict, features: str | None, stage: str) -> str | None:
    """Why `record` is not the experiment's (None: it is): the first identity key or protocol param
    that differs from the experiment's `params` (flattened), or other test features."""
    for key, param in PARAM_OF.items():
        if param in params and params[param] != "auto" and not same(record.get(key), params[param]):
            return f"{FILES[stage]} is from {param}={record.get(key)} (this experiment: {params[param]})"
    for param, value in record.get("params", {}).items():
        if param in params and not same(value, params[param]):
            return f"{FILES[stage]} was made with {param}={value} (this experiment: {params[param]})"
    if features is not None and record.get("features") not in (None, features):
        return f"{FILES[stage]} scored other test features than this experiment's (another extraction)"
    return None
