"""The leaderboard: experiments' headline metrics as models x datasets tables, like with like.

One table per result (linear probe, zero-shot, few-shot per k), one column per (dataset, metric,
test-set size), one row per model, weights, layer (as the record states it: `extract.layer: auto` is
resolved by each model source) and protocol: the params that change what a number means
(`data.limit_per_class`, `C` given or searched, `tune.*`, `train.*` but the device and memory, the
precision, `fewshot.*`, `zeroshot.templates`, and any param this module does not know).
Experiments that differ in any of them are separate rows, labelled by what differs; `strict` stops
instead. Each cell is the headline score of the experiment's record (`results/<stage>.json`) with its
95% interval and test-set size, shown only where `report.attribution` finds the record is the
experiment's own. Two experiments of one row and dataset (a rerun) are duplicates: the latest
(commit time) gives that row and dataset's cells, unless the other is one the report compares with
(`prefer`: the baseline, or A and B), and the report names the others.
This module is pure logic on `Experiment` records; `report.experiments` reads them from DVC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from clipprobe import notes as notes_
from clipprobe.errors import ClipprobeError
from clipprobe.report.attribution import flatten, foreign
from clipprobe.report.names import short

PROBE, ZERO_SHOT = "linear probe", "zero-shot"
STAGES = ("evaluate", "zeroshot", "fewshot")
_TITLES = {"evaluate": PROBE, "zeroshot": ZERO_SHOT, "fewshot": "few-shot"}
# params that place a cell (row and column), say where files are, or how fast work runs
_NOT_PROTOCOL = {"data.name", "data.root", "model.name", "model.weights", "extract.layer", "extract.batch_size",
                 "extract.device", "extract.workers", "extract.shard_size", "extract.engine", "train.device",
                 "train.memory"}
# params that only some data sources read (by `data.name`'s prefix): not protocol for the others
_SOURCE_ONLY = {"data.image_column": ("hf:",), "data.label_column": ("hf:",), "data.splits": ("hf:", "wds:")}
# protocol params (and sections) that cannot change a table's numbers: those rows are not split by them
_IRRELEVANT = {"evaluate": ("fewshot", "zeroshot"), "zeroshot": ("C", "tune", "train", "fewshot"),
               "fewshot": ("C", "tune", "zeroshot")}

Row = tuple[str, str, str, tuple[tuple[str, str], ...]]   # model, weights, layer, (param, value) that vary
Column = tuple[str, str, int]                         # dataset, metric, test images


@dataclass(frozen=True)
class Experiment:
    """One finished experiment: its params (params.yaml as written), its records by stage, the
    fingerprint of its own test features where DVC's cache holds them, and the hash of its prepared
    data (prepare's output in its dvc.lock: the same test images have the same hash)."""
    name: str
    rev: str = ""
    baseline: str = ""
    timestamp: datetime | None = None
    params: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)     # "evaluate" -> results/evaluate.json, ...
    features: str | None = None
    prepared: str | None = None


@dataclass(frozen=True)
class Cell:
    value: float
    low: float | None
    high: float | None
    n_test: int
    experiment: str
    std: float | None = None      # few-shot: the spread over seeds


@dataclass
class Table:
    title: str
    stage: str
    columns: list[Column]
    cells: dict[tuple[Row, Column], Cell]
    rows: list[Row] = field(default_factory=list)
    row_of: dict[str, Row] = field(default_factory=dict)     # experiment name -> its row (kept or replaced)

    def mean(self, row: Row) -> float | None:
        """Mean over every column; None where the row lacks one (means over other sets don't compare)."""
        values = [self.cells[row, c].value for c in self.columns if (row, c) in self.cells]
        return sum(values) / len(values) if values and len(values) == len(self.columns) else None

    def value(self, row: Row, column: Column | None) -> float | None:
        """The cell's value (None: the row's mean), or None where there is none."""
        if column is None:
            return self.mean(row)
        return self.cells[row, column].value if (row, column) in self.cells else None

    def bests(self) -> dict[Column | None, float | None]:
        """The best value of each column and of the mean column (key None)."""
        out = {}
        for column in [*self.columns, None]:
            values = [v for v in (self.value(r, column) for r in self.rows) if v is not None]
            out[column] = max(values) if values else None
        return out


@dataclass
class Leaderboard:
    tables: list[Table]
    shown: list[Experiment]
    replaced: list[tuple[str, Row, str, Experiment, list[Experiment]]]   # table, row, dataset, kept, dropped
    skipped: list[tuple[str, str]]                                       # experiment, why nothing of it is shown
    not_run: list[tuple[str, str, str]]                                  # experiment, stage, why it is not its own
    shared: dict[str, str]                                               # protocol params every experiment shares
    notes: list[tuple[str, str]] = field(default_factory=list)           # experiment, note


def _value(v) -> str:
    return "null" if v is None else str(v)


def protocol(e: Experiment) -> dict[str, str]:
    """The experiment's protocol params and their values (as text)."""
    flat = flatten(e.params)
    source = str(flat.get("data.name", ""))

    def read(key: str) -> bool:
        prefixes = next((v for k, v in _SOURCE_ONLY.items() if key == k or key.startswith(k + ".")), None)
        return prefixes is None or source.startswith(prefixes)
    return {k: _value(v) for k, v in flat.items()
            if k not in _NOT_PROTOCOL and not k.startswith("extract.ray.") and read(k)}


def relevant(key: str, stage: str) -> bool:
    """Whether protocol param `key` can change `stage`'s numbers (a new C leaves zero-shot as it was)."""
    return not any(key == k or key.startswith(k + ".") for k in _IRRELEVANT[stage])


def _section(e: Experiment, key: str) -> str:
    return _value(flatten(e.params).get(key, "?"))


def _latest_first(group: list[tuple[int, Experiment]]) -> list[Experiment]:
    """Latest commit time first; among equal times, the one listed first (DVC lists newest first)."""
    def key(ie):
        i, e = ie
        return (e.timestamp is None, -e.timestamp.timestamp() if e.timestamp else 0.0, i)
    return [e for _, e in sorted(group, key=key)]


def _own(e: Experiment, not_run: list) -> dict[str, dict]:
    """The experiment's records that it made and that hold a score, or say why none was scored."""
    own, flat = {}, flatten(e.params)
    for stage in STAGES:
        record = e.records.get(stage)
        if record is None or not (record.get("metric") or record.get("skipped")):
            continue
        why = foreign(record, flat, e.features, stage)
        if why:
            not_run.append((e.name, stage, why))
        else:
            own[stage] = record
    return own


def _varying(protocols: list[dict[str, str]]) -> list[str]:
    keys = sorted({k for p in protocols for k in p})
    return [k for k in keys if len({p.get(k, "-") for p in protocols}) > 1]


def _cells(stage: str, record: dict, dataset: str, name: str):
    """(table key, title, column, cell) of each score in a record (none where it scored nothing)."""
    if not record.get("metric"):
        return
    n, metric = record["n_test"], record["metric"]
    if stage == "fewshot":
        for k, r in record["results"].items():
            s = r["score"]
            yield (2, int(k)), f"few-shot, {k} shot{'s' * (int(k) > 1)}", (dataset, metric, n), \
                Cell(s["value"], s["low"], s["high"], n, name, s["std"])
    else:
        m = record["metrics"][metric]
        key, title = ((0, 0), PROBE) if stage == "evaluate" else ((1, 0), ZERO_SHOT)
        yield key, title, (dataset, metric, n), Cell(m["value"], m["low"], m["high"], n, name)


def build(experiments: list[Experiment], strict: bool = False, prefer: tuple[str, ...] = ()) -> Leaderboard:
    """The leaderboard of `experiments`; `strict`: stop where they differ in protocol or repeat a cell;
    `prefer`: experiments whose cells their row shows over a later duplicate's (those compared with)."""
    skipped, not_run, owned = [], [], []
    for i, e in enumerate(experiments):
        own = _own(e, not_run)
        if own:
            owned.append((i, e, own))
        elif not any(e.records.get(s) for s in STAGES):
            skipped.append((e.name, "no results/*.json: no scoring stage ran (or an older clipprobe made it)"))
        else:
            skipped.append((e.name, "none of its results is its own: see Not run"))
    protocols = {e.name: protocol(e) for _, e, _ in owned}
    varying = {s: _varying([{k: v for k, v in protocols[e.name].items() if relevant(k, s)}
                            for _, e, own in owned if s in own]) for s in STAGES}
    if strict and any(varying.values()):
        keys = sorted({k for ks in varying.values() for k in ks})
        raise ClipprobeError("the experiments differ in protocol (" + "; ".join(
            f"{k} = {', '.join(sorted({p.get(k, '-') for p in protocols.values()}))}" for k in keys)
            + "): choose experiments with --exp, or drop --strict to show them as separate rows")

    tables: dict[tuple[int, int], Table] = {}     # (0, 0) probe, (1, 0) zero-shot, (2, k) k shots
    replaced, shown, said, unscored = [], {}, [], []
    for stage in STAGES:
        groups = {}
        for i, e, own in owned:
            if stage in own:
                layer = e.records[stage].get("layer") or _section(e, "extract.layer")
                row = (_section(e, "model.name"), _section(e, "model.weights"), str(layer),
                       tuple((k, protocols[e.name].get(k, "-")) for k in varying[stage]))
                groups.setdefault((row, _section(e, "data.name")), []).append((i, e))
        for (row, dataset), group in groups.items():
            ordered = sorted(_latest_first(group), key=lambda d: d.name not in prefer)
            if len(ordered) > 1 and strict:
                raise ClipprobeError(f"{len(ordered)} experiments of one protocol for {' / '.join(row[:3])} on "
                                     f"{dataset}: {', '.join(e.name for e in ordered)}; choose with --exp, or drop "
                                     "--strict to keep the latest")
            e = ordered[0]
            if not e.records[stage].get("metric"):    # e.g. zero-shot of a model without a text tower
                unscored.append((stage, row, [d.name for d in ordered]))
            for key, title, column, cell in _cells(stage, e.records[stage], dataset, e.name):
                table = tables.setdefault(key, Table(title, stage, [], {}))
                if column not in table.columns:
                    table.columns.append(column)
                table.cells[row, column] = cell
                table.row_of.update((d.name, row) for d in ordered)
            if len(ordered) > 1:
                replaced.append((_TITLES[stage], row, dataset, e, ordered[1:]))
            if e.name not in shown:
                shown[e.name] = e
            said += [(e.name, note) for note in e.records[stage].get("notes", [])]
    for _, e, own in owned:
        if e.features is None and any(r.get("features") for r in own.values()):
            said.append((e.name, "its test features are not in this DVC cache, so its results were matched to it by "
                                 "params only, not by the features they scored; `dvc pull` (or `dvc exp pull`) "
                                 "lets the report check them"))
        if e.name in shown:
            said += [(e.name, note) for note in _full_data_note(own)]
            if own.get("zeroshot", {}).get("skipped"):
                said.append((e.name, f"zero-shot not scored: {own['zeroshot']['skipped']}"))
    for stage, row, exps in unscored:    # a row of dashes where the table exists for others
        t = next((t for t in tables.values() if t.stage == stage), None)
        if t is not None:
            t.row_of.update((name, row) for name in exps)
    for t in tables.values():
        t.columns.sort(key=lambda c: (short(c[0], dataset=True), c))
        t.rows = sorted({r for r, _ in t.cells} | set(t.row_of.values()), key=lambda r, t=t: _rank(t, r))
    first = next(iter(protocols.values()), {})   # the protocol params every experiment shares, that a table shown reads
    shared = {k: v for k, v in first.items() if all(p.get(k) == v for p in protocols.values())
              and any(relevant(k, t.stage) for t in tables.values())}
    return Leaderboard([tables[k] for k in sorted(tables)], list(shown.values()),
                       sorted(replaced, key=lambda x: (x[0], x[1], x[2])), skipped, not_run, shared,
                       list(dict.fromkeys(said)))


def _rank(table: Table, row: Row):
    """Best mean first; rows without a mean after, those with more cells first."""
    mean = table.mean(row)
    return (mean is None, -(mean or 0.0), -sum((row, c) in table.cells for c in table.columns), row)


def _full_data_note(own: dict) -> list[str]:
    """The full-data probe had fewer images of some class than the largest few-shot k it is shown beside."""
    evaluate, fewshot = own.get("evaluate"), own.get("fewshot")
    if not (evaluate and fewshot and fewshot.get("results") and evaluate.get("n_train_per_class_min")):
        return []
    note = notes_.full_data_below_shots(evaluate["n_train_per_class_min"], max(map(int, fewshot["results"])))
    return [note] if note else []
