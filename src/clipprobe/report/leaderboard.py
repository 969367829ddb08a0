"""The leaderboard: experiments' headline metrics as models x datasets tables.

One row per (model.name, model.weights, extract.layer), one column per (dataset, metric), a mean
column, the best value of each column marked: the CLIP paper's Table 10 for the experiments given.
What each experiment contributes (files as DVC collects them for it):

- linear probe: `accuracy.json`'s `score` (named by `metric`) where it has one, else its `top1`;
- zero-shot: `zeroshot.json`, the same rule, where it names the model, weights and dataset of the
  experiment's accuracy.json (a file left over from another run is not shown); a model without a
  text tower (its record says `text_tower: false`) has no zero-shot cell ("-");
- few-shot: `fewshot.json`, one table per number of shots k: `results[k]`'s `score_mean` (the mean
  over seeds of the headline metric the file's `metric` names), else its `top1_mean`.

Two experiments with the same row and dataset are duplicates: the latest (commit time) gives
every cell of that row and dataset, and the report says which experiments it replaced.
This module is pure logic on `Experiment` records; `clipprobe.report.experiments` reads them from DVC.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath

from clipprobe.errors import ClipprobeError

PROBE, ZERO_SHOT = "linear probe", "zero-shot"
# Params that place a cell (row and column) or say where files are; any other param that
# differs between the experiments shown is listed under the tables.
_PLACING = {"model.name", "model.weights", "extract.layer", "data.name", "data.root"}
_FILE_SUFFIXES = (".json", ".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")

Row = tuple[str, str, str]      # model, weights, layer
Column = tuple[str, str]        # dataset, metric


@dataclass(frozen=True)
class Experiment:
    """One finished experiment: its params (params.yaml as written) and its metrics files by name."""
    name: str
    rev: str = ""
    baseline: str = ""
    timestamp: datetime | None = None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)     # "accuracy.json" -> its content, ...
    malformed: dict = field(default_factory=dict)   # "accuracy.json" -> its path, where it is not valid JSON


@dataclass(frozen=True)
class Cell:
    value: float
    experiment: str


@dataclass
class Table:
    title: str
    columns: list[Column]
    cells: dict[tuple[Row, Column], Cell]

    def mean(self, row: Row) -> float | None:
        """Mean over every column; None where the row lacks one (means over other sets don't compare)."""
        values = [self.cells[row, c].value for c in self.columns if (row, c) in self.cells]
        return sum(values) / len(values) if values and len(values) == len(self.columns) else None

    def value(self, row: Row, column: Column | None) -> float | None:
        """The cell's value (None: the row's mean), or None where there is none."""
        if column is None:
            return self.mean(row)
        return self.cells[row, column].value if (row, column) in self.cells else None

    def bests(self, rows: list[Row]) -> dict[Column | None, float | None]:
        """The best value of each column and of the mean column (key None) over `rows`."""
        out = {}
        for column in [*self.columns, None]:
            values = [v for v in (self.value(r, column) for r in rows) if v is not None]
            out[column] = max(values) if values else None
        return out


@dataclass
class Leaderboard:
    rows: list[Row]
    tables: list[Table]
    shown: list[Experiment]
    replaced: list[tuple[Row, str, Experiment, list[Experiment]]]   # row, dataset, kept, dropped
    skipped: list[tuple[str, str]]                                  # experiment, why
    varying: dict[str, list]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def headline(metrics: dict) -> tuple[str, float] | None:
    """(metric name, value): `score` named by `metric` where present, else `top1`."""
    if _number(metrics.get("score")):
        return str(metrics.get("metric") or "score"), float(metrics["score"])
    if _number(metrics.get("top1")):
        return "top1", float(metrics["top1"])
    return None


def fewshot(metrics: dict) -> dict[int, tuple[str, float]]:
    """k -> (metric name, mean over seeds) from a fewshot.json (see the module docstring)."""
    results = metrics.get("results")
    out = {}
    for key, entry in (results.items() if isinstance(results, dict) else ()):
        if not (str(key).isdigit() and int(key) > 0 and isinstance(entry, dict)):
            continue
        if metrics.get("metric") and _number(entry.get("score_mean")):
            out[int(key)] = (str(metrics["metric"]), float(entry["score_mean"]))
        elif _number(entry.get("top1_mean")):
            out[int(key)] = ("top1", float(entry["top1_mean"]))
    return dict(sorted(out.items()))


def _same_run(zeroshot: dict, accuracy: dict) -> bool:
    """Whether zeroshot.json comes from the experiment's model, weights and dataset (where both say)."""
    return all(zeroshot[k] == accuracy[k] for k in ("model", "weights", "dataset") if k in zeroshot and k in accuracy)


def _section(params: dict, key: str):
    section, _, name = key.partition(".")
    value = params.get(section)
    return value.get(name) if isinstance(value, dict) else None


def row_of(e: Experiment) -> Row:
    acc = e.metrics.get("accuracy.json", {})
    return (str(_section(e.params, "model.name") or acc.get("model", "?")),
            str(_section(e.params, "model.weights") or acc.get("weights", "?")),
            _layer(_section(e.params, "extract.layer"), acc))


def _layer(param, accuracy: dict) -> str:
    """The layer as the features were made (`auto` resolved by the model's source, as accuracy.json
    records it), else as the params say."""
    if param in (None, "auto") and accuracy.get("layer"):
        return str(accuracy["layer"])
    return str(param or "projection")


def dataset_of(e: Experiment) -> str:
    return str(_section(e.params, "data.name") or e.metrics.get("accuracy.json", {}).get("dataset", "?"))


def _flatten(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _latest_first(group: list[tuple[int, Experiment]]) -> list[Experiment]:
    """Latest commit time first; among equal times, the one listed first (DVC lists newest first)."""
    def key(ie):
        i, e = ie
        return (e.timestamp is None, -e.timestamp.timestamp() if e.timestamp else 0.0, i)
    return [e for _, e in sorted(group, key=key)]


def build(experiments: list[Experiment], duplicates: str = "latest") -> Leaderboard:
    """The leaderboard of `experiments`; `duplicates`: `latest` (the latest wins) or `error`."""
    if duplicates not in ("latest", "error"):
        raise ClipprobeError(f"duplicates={duplicates!r}: use latest or error")
    skipped, groups = [], {}
    for i, e in enumerate(experiments):
        for name in sorted(set(e.malformed) - {"accuracy.json"}):
            skipped.append((e.name, f"its {e.malformed[name]} is malformed, not valid JSON (its cells left empty)"))
        if "accuracy.json" in e.malformed:
            skipped.append((e.name, f"its {e.malformed['accuracy.json']} is malformed, not valid JSON"))
        elif "accuracy.json" not in e.metrics:
            skipped.append((e.name, "no metrics/accuracy.json"))
        elif headline(e.metrics["accuracy.json"]) is None:
            skipped.append((e.name, "accuracy.json has neither score nor top1"))
        else:
            groups.setdefault((row_of(e), dataset_of(e)), []).append((i, e))
    replaced, kept = [], {}
    for (row, dataset), group in groups.items():
        ordered = _latest_first(group)
        if len(ordered) > 1:
            if duplicates == "error":
                raise ClipprobeError(
                    f"{len(ordered)} experiments for {' / '.join(row)} on {dataset}: "
                    f"{', '.join(e.name for e in ordered)}; choose with --exp or --baseline, or pass "
                    "--duplicates latest")
            replaced.append((row, dataset, ordered[0], ordered[1:]))
        kept[row, dataset] = ordered[0]

    tables: dict[tuple[int, int], Table] = {}     # (0, 0) probe, (1, 0) zero-shot, (2, k) k shots

    def put(key, title, row, dataset, metric_value, e):
        table = tables.setdefault(key, Table(title, [], {}))
        col = (dataset, metric_value[0])
        if col not in table.columns:
            table.columns.append(col)
        table.cells[row, col] = Cell(metric_value[1], e.name)

    for (row, dataset), e in kept.items():
        put((0, 0), PROBE, row, dataset, headline(e.metrics["accuracy.json"]), e)
        if "zeroshot.json" in e.metrics and e.metrics["zeroshot.json"].get("text_tower") is not False:
            zs = headline(e.metrics["zeroshot.json"])
            if zs is None or not _same_run(e.metrics["zeroshot.json"], e.metrics["accuracy.json"]):
                skipped.append((e.name, "its zeroshot.json has no score or top1, or is another run's "
                                        "(zero-shot cell left empty)"))
            else:
                put((1, 0), ZERO_SHOT, row, dataset, zs, e)
        if "fewshot.json" in e.metrics:
            if not isinstance(e.metrics["fewshot.json"].get("results"), dict):
                skipped.append((e.name, "its fewshot.json has no results (few-shot cells left empty)"))
            for k, metric_value in fewshot(e.metrics["fewshot.json"]).items():
                put((2, k), f"few-shot, {k} shot{'s' * (k > 1)}", row, dataset, metric_value, e)
    for t in tables.values():
        t.columns.sort(key=lambda c: (short(c[0], dataset=True), c[1], c[0]))

    def rank(row):   # best probe mean first; rows without a mean after, those with more cells first
        probe = tables[0, 0]
        mean = probe.mean(row)
        return (mean is None, -(mean or 0.0), -sum((row, c) in probe.cells for c in probe.columns), row)

    shown = list(kept.values())
    flat = [_flatten(e.params) for e in shown if e.params]
    varying = {}
    for key in sorted({k for f in flat for k in f} - _PLACING):
        values = {"null" if f.get(key) is None else str(f.get(key)) for f in flat}
        if len(values) > 1:
            varying[key] = sorted(values)
    return Leaderboard(sorted({r for r, _ in kept}, key=rank), [tables[k] for k in sorted(tables)], shown,
                       sorted(replaced, key=lambda x: (x[0], x[1])), skipped, varying)


# ---------------------------------------------------------------- rendering

def short(value: str, dataset: bool = False) -> str:
    """The name of a path (an ImageFolder root, a model config, a checkpoint); other values as they are.

    Dataset names in the registry never hold a "/"; model names may (`ViT-B/32`), so a model
    or weights value counts as a path by its file suffix or a leading `/`, `.` or `~` (after the
    `hf:` of a Hugging Face model directory, which stays).  A `wds:` shard pattern shows as its
    dataset's folder, an `hf:` dataset as its folder or repo name."""
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


def column_label(col: Column, names: dict[str, str]) -> str:
    return f"{names[col[0]]} ({col[1]})"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(board: Leaderboard) -> str:
    datasets = labels((d for t in board.tables for d, _ in t.columns), dataset=True)
    models, weights = labels(r[0] for r in board.rows), labels(r[1] for r in board.rows)
    baselines = sorted({e.baseline for e in board.shown if e.baseline})
    n = len(board.shown)
    lines = [f"# Leaderboard: {n} experiment{'s' * (n != 1)}"
             + (f" of baseline{'s' * (len(baselines) > 1)} {', '.join(baselines)}" if baselines else ""), "",
             "Test-split headline metric (%) of each model x dataset; **bold**: the best of its column. "
             "Mean: over every dataset of the table, only for rows that have them all.", ""]
    for t in board.tables:
        lines += [f"## {t.title[0].upper()}{t.title[1:]}", "",
                  "| model | weights | layer | " + " | ".join(column_label(c, datasets) for c in t.columns)
                  + " | mean |",
                  "|---|---|---|" + "---:|" * (len(t.columns) + 1)]
        best = t.bests(board.rows)
        for r in board.rows:
            values = {c: t.value(r, c) for c in best}
            cells = [f"**{_fmt(v)}**" if v is not None and v == best[c] else _fmt(v) for c, v in values.items()]
            lines.append(f"| {models[r[0]]} | {weights[r[1]]} | {r[2]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += notes(board)
    return "\n".join(lines).rstrip() + "\n"


def notes(board: Leaderboard) -> list[str]:
    out = []
    if board.replaced:
        out.append(f"Duplicates: {len(board.replaced)} model x dataset pair(s) had more than one experiment; "
                   "the latest wins:")
        for row, dataset, kept, dropped in board.replaced:
            out.append(f"- {' / '.join(short(x) for x in row)} on {short(dataset, True)}: {kept.name} "
                       f"({_when(kept)}) over {', '.join(f'{d.name} ({_when(d)})' for d in dropped)}")
        out.append("")
    if board.varying:
        out.append("Params that differ between the experiments shown: "
                   + "; ".join(f"{k} = {', '.join(v)}" for k, v in board.varying.items()) + ".")
        out.append("")
    if board.skipped:
        out.append("Not shown: " + "; ".join(f"{name} ({why})" for name, why in board.skipped) + ".")
        out.append("")
    return out


def _when(e: Experiment) -> str:
    return e.timestamp.strftime("%Y-%m-%d %H:%M:%S") if e.timestamp else "time unknown"


CSV_HEADER = ["table", "model", "weights", "layer", "dataset", "metric", "value", "best", "experiment"]


def csv_text(board: Leaderboard) -> str:
    """One line per cell (full param values, the experiment it came from), and one per row mean."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for t in board.tables:
        best = t.bests(board.rows)
        for r in board.rows:
            for c in t.columns:
                if (r, c) in t.cells:
                    cell = t.cells[r, c]
                    w.writerow([t.title, *r, c[0], c[1], cell.value, str(cell.value == best[c]).lower(), cell.experiment])
            mean = t.mean(r)
            if mean is not None:
                w.writerow([t.title, *r, "mean", "mean", round(mean, 4), str(mean == best[None]).lower(), ""])
    return buf.getvalue()
