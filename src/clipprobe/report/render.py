"""The leaderboard as Markdown and CSV: each score with its 95% interval and test-set size.

Rows are labelled by what differs between them; against a baseline row, the paired differences."""

from __future__ import annotations

import csv
import io

from clipprobe.report import names
from clipprobe.report.leaderboard import PROBE, Column, Experiment, Leaderboard, Row, Table
from clipprobe.report.paired import ALPHA, Difference

Diffs = dict[tuple[str, Row, Column], Difference]    # (table title, row, column) -> row - baseline


def protocol_item(key: str, value: str) -> str:
    """One protocol param as a row label shows it: `C=0.316`, `20 per class`."""
    if key == "data.limit_per_class":
        return "all images" if value == "null" else f"{value} per class"
    return f"{key}={value}"


def row_labels(rows: list[Row]) -> dict[Row, str]:
    """`ViT-B/32 · random · projection · C=0.316`: model, weights, layer and the protocol params that
    differ between rows."""
    return {r: " · ".join(cells) for r, cells in _row_cells(rows).items()}


def _row_cells(rows: list[Row]) -> dict[Row, list[str]]:
    models, weights = names.labels(r[0] for r in rows), names.labels(r[1] for r in rows)
    return {r: [models[r[0]], weights[r[1]], r[2], *(protocol_item(k, v) for k, v in r[3])] for r in rows}


def column_labels(board: Leaderboard) -> dict[Column, str]:
    """`cifar10 (top-1, n=10000)`: the dataset by its name, its metric and test-set size."""
    datasets = names.labels((c[0] for t in board.tables for c in t.columns), dataset=True)
    return {c: f"{datasets[c[0]]} ({names.metric(c[1])}, n={c[2]})" for t in board.tables for c in t.columns}


def title(board: Leaderboard, table: Table) -> str:
    """The table's title; the linear probe's says "full-data (N per class)" where every row has that limit."""
    text = table.title[0].upper() + table.title[1:]
    limit = board.shared.get("data.limit_per_class")
    if table.title == PROBE:
        text += ", full-data" + (f" ({limit} per class)" if limit not in (None, "null") else "")
    return text


def _head(rows: list[Row]) -> str:
    """The Markdown row header: model, weights, layer, and the protocol where rows differ in it."""
    return "model | weights | layer" + (" | protocol" if any(r[3] for r in rows) else "")


def _row(rows: list[Row], r: Row) -> str:
    cells = _row_cells(rows)[r]
    return " | ".join(cells[:3] + ([", ".join(cells[3:])] if any(x[3] for x in rows) else []))


def _cell(t: Table, r: Row, c: Column | None, best) -> str:
    v = t.value(r, c)
    if v is None:
        return "-"
    text = f"**{v:.2f}**" if v == best[c] else f"{v:.2f}"
    if c is not None:
        cell = t.cells[r, c]
        text += f" [{cell.low:.2f}, {cell.high:.2f}]" + (f" ±{cell.std:.2f}" if cell.std is not None else "")
    return text


def _diff(d: Difference | None) -> str:
    if d is None:
        return "-"
    text = f"{d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}] p={d.p_holm:.3g}"
    return f"**{text}**" if d.significant else text


def markdown(board: Leaderboard, baseline: str | None = None, diffs: Diffs | None = None) -> str:
    """The leaderboard; with a `baseline` experiment, each table's differences from that experiment's row."""
    cols = column_labels(board)
    revs = sorted({e.baseline for e in board.shown if e.baseline})
    n = len(board.shown)
    lines = [f"# Leaderboard: {n} experiment{'s' * (n != 1)}"
             + (f" of baseline{'s' * (len(revs) > 1)} {', '.join(revs)}" if revs else ""), "",
             "Test-split headline metric (%) of each model x dataset with its 95% interval [low, high] (a seeded "
             "bootstrap over the test images, 1,000 resamples); few-shot ±: the std over seeds. **Bold**: the best "
             "of its column. Mean: over every column of the table, only for rows that have them all.", ""]
    if board.shared:
        lines += ["Same protocol for every experiment: " + ", ".join(f"{k}={v}" for k, v in board.shared.items())
                  + ".", ""]
    for t in board.tables:
        best, rows, head = t.bests(), row_labels(t.rows), _head(t.rows)
        lines += [f"## {title(board, t)}", "", f"| {head} | " + " | ".join(cols[c] for c in t.columns) + " | mean |",
                  "|---" * (head.count("|") + 1) + "|" + "---:|" * (len(t.columns) + 1)]
        lines += [f"| {_row(t.rows, r)} | " + " | ".join(_cell(t, r, c, best) for c in best) + " |" for r in t.rows]
        lines.append("")
        base = t.row_of.get(baseline) if baseline else None
        if base is not None and diffs and any(k[0] == t.title for k in diffs):
            lines += [f"### {title(board, t)}: difference from {rows[base]} ({baseline})", "",
                      "Row minus baseline (points) [paired 95% interval], p after Holm's correction over the datasets "
                      f"compared (top-1: exact McNemar; other metrics: paired bootstrap). **Bold**: p < {ALPHA}.", "",
                      f"| {head} | " + " | ".join(cols[c] for c in t.columns) + " |",
                      "|---" * (head.count("|") + 1) + "|" + "---:|" * len(t.columns)]
            lines += [f"| {_row(t.rows, r)} | " + " | ".join(_diff(diffs.get((t.title, r, c))) for c in t.columns)
                      + " |" for r in t.rows if r != base]
            lines.append("")
    lines += notes(board)
    return "\n".join(lines).rstrip() + "\n"


def notes(board: Leaderboard) -> list[str]:
    out = []
    if board.replaced:
        out.append(f"Duplicates: {len(board.replaced)} row x dataset pair(s) had more than one experiment of the "
                   "same protocol; the latest wins (or the one compared with):")
        for table, row, dataset, kept, dropped in board.replaced:
            out.append(f"- {table}, {row_labels([row])[row]} on {names.short(dataset, True)}: {kept.name} "
                       f"({_when(kept)}) over {', '.join(f'{d.name} ({_when(d)})' for d in dropped)}")
        out.append("")
    if board.notes:
        out.append("Notes:")
        out += [f"- {name}: {note}" for name, note in board.notes]
        out.append("")
    if board.not_run:
        out.append("Not run in these experiments (their files came with the baseline commit, or from another run):")
        out += [f"- {name}, {stage}: {why}" for name, stage, why in board.not_run]
        out.append("")
    if board.skipped:
        out.append("Not shown: " + "; ".join(f"{name} ({why})" for name, why in board.skipped) + ".")
        out.append("")
    return out


def _when(e: Experiment) -> str:
    return e.timestamp.strftime("%Y-%m-%d %H:%M:%S") if e.timestamp else "time unknown"


CSV_HEADER = ["table", "model", "weights", "layer", "protocol", "dataset", "metric", "n_test", "value", "low", "high",
              "std", "best", "experiment", "diff", "diff_low", "diff_high", "p", "p_holm", "significant"]


def csv_text(board: Leaderboard, diffs: Diffs | None = None) -> str:
    """One line per cell (full param values, the experiment it came from, its difference from the
    baseline where there is one), and one per row mean (dataset `mean`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for t in board.tables:
        best = t.bests()
        for r in t.rows:
            proto = "; ".join(f"{k}={v}" for k, v in r[3])
            for c in t.columns:
                if (r, c) in t.cells:
                    cell, d = t.cells[r, c], (diffs or {}).get((t.title, r, c))
                    w.writerow([t.title, *r[:3], proto, c[0], c[1], c[2], cell.value, cell.low, cell.high,
                                "" if cell.std is None else cell.std, str(cell.value == best[c]).lower(),
                                cell.experiment,
                                *(["", "", "", "", "", ""] if d is None else
                                  [d.diff, d.low, d.high, d.p, d.p_holm, str(d.significant).lower()])])
            mean = t.mean(r)
            if mean is not None:
                w.writerow([t.title, *r[:3], proto, "mean", "mean", "", round(mean, 4), "", "", "",
                            str(mean == best[None]).lower(), "", "", "", "", "", "", ""])
    return buf.getvalue()
