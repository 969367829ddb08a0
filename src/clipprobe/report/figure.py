"""The leaderboard as a heatmap PNG: a panel per table, each cell's value and 95% interval in it.

The panels (linear probe, zero-shot, few-shot per k) stand side by side.

Colour is points above or below the column's mean, on one scale shared by every panel, so a colour
means the same difference everywhere; the scale reaches at least the cells' median interval width, so
a difference within the noise (one image of a small test set) stays pale.  With a baseline row, colour
is points above or below the baseline's cell, and only where the difference is established: the
paired test significant after Holm's correction (linear probe, zero-shot), or, for few-shot (no
paired test), the two cells' 95% intervals apart; every other cell stays neutral (the scale's centre).
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np

from clipprobe import atomic
from clipprobe.report import names
from clipprobe.report.leaderboard import Leaderboard
from clipprobe.report.render import Diffs, row_labels, title

DPI = 150
CELL_W, CELL_H = 0.95, 0.56     # inches: room for "[99.9, 100.0]" at 6 pt and three lines of text
GAP = 0.35                      # between panels
BAR_H = 1.2                     # the colour bar's height
TITLE_CHAR = 0.075              # inches per character of a 9 pt panel title
WRAP = 15                       # characters per line of a column label (7 pt fits a cell's width)


def _column_label(column) -> str:
    dataset, metric, n = column
    name = names.short(dataset, dataset=True)
    return "\n".join([*(textwrap.wrap(name, WRAP) or [name]), names.metric(metric), f"n={n}"])


def _panel(table, rows, baseline: str | None, diffs: Diffs):
    """values, colour values (points off the reference), and each cell's text lines, for `rows`."""
    # a mean over one column would repeat it
    cols, base = [*table.columns, *([None] if len(table.columns) > 1 else [])], table.row_of.get(baseline)
    values = np.full((len(rows), len(cols)), np.nan)
    text = [[[] for _ in cols] for _ in rows]
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            v = table.value(r, c)
            if v is None:
                continue
            values[i, j] = v
            text[i][j].append(f"{v:.1f}")
            if c is None:
                continue
            cell = table.cells[r, c]
            d = diffs.get((table.title, r, c))
            if r == base:
                text[i][j].append("baseline")
            elif d is not None:
                text[i][j].append(f"{d.diff:+.1f}{'*' if d.significant else ''}")
            elif base is not None and table.stage == "fewshot" and (base, c) in table.cells:
                text[i][j].append(f"{v - table.cells[base, c].value:+.1f}")
            text[i][j].append(f"[{cell.low:.1f}, {cell.high:.1f}]")
            if cell.std is not None:
                text[i][j].append(f"sd {cell.std:.1f}")
    if base is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # a column without values: its mean is NaN
            ref = np.nanmean(values, axis=0)
        return cols, values, values - ref[None, :], text
    off = values - values[rows.index(base)][None, :]
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if np.isfinite(off[i, j]) and not _established(table, r, base, c, diffs):
                off[i, j] = 0.0    # neutral: a difference the data do not establish
    return cols, values, off, text


def _established(table, row, base, column, diffs: Diffs) -> bool:
    """Whether `row`'s difference from the baseline row in `column` is more than noise: its paired test
    significant, or (few-shot, which has none) the two 95% intervals apart. Means: never."""
    if column is None or row == base:
        return False
    d = diffs.get((table.title, row, column))
    if d is not None:
        return d.significant
    if table.stage != "fewshot" or (base, column) not in table.cells:
        return False
    a, b = table.cells[row, column], table.cells[base, column]
    return a.low > b.high or b.low > a.high


def _scale(board: Leaderboard, panels) -> float:
    """The difference (points) that saturates the colour: the largest shown, but never less than the
    median width of the cells' 95% intervals, so differences within the noise stay pale."""
    spread = [np.abs(off[np.isfinite(off)]) for _, _, _, off, _ in panels]
    widths = [c.high - c.low for t in board.tables for c in t.cells.values() if c.low is not None]
    return max([1.0, float(np.median(widths)) if widths else 0.0] + [float(s.max()) for s in spread if s.size])


def _label_width(labels: list[str]) -> float:
    return 0.3 + 0.062 * max(map(len, labels))


def draw(board: Leaderboard, path: str | Path, baseline: str | None = None, diffs: Diffs | None = None) -> None:
    """Write the heatmap of every table of `board` to `path`, atomically; `baseline`: the experiment
    whose row each table's colours are measured from."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = diffs or {}
    orders, previous = [], None    # a panel with the rows of the one before keeps its order, and shares its labels
    for t in board.tables:
        previous = previous if previous is not None and set(previous) == set(t.rows) else list(t.rows)
        orders.append(previous)
    panels = [(t, *_panel(t, rows, baseline, diffs)) for t, rows in zip(board.tables, orders)]
    lim = _scale(board, panels)

    layout, x, previous = [], 0.0, None     # (x, width, y labels or None, title) per panel, in inches
    for (t, cols, _, _, _), rows in zip(panels, orders):
        labels = [row_labels(rows)[r] for r in rows]
        shown = labels if labels != previous else None
        x += _label_width(labels) if shown else GAP
        width = CELL_W * len(cols)
        layout.append((x, width, shown, textwrap.fill(title(board, t), max(8, int(width / TITLE_CHAR)),
                                                      break_on_hyphens=False)))
        x += width
        previous = labels
    height = max(CELL_H * max(map(len, orders)), BAR_H)
    lines = max(_column_label(c).count("\n") + 1 for t in board.tables for c in t.columns)
    head = 0.15 + 0.17 * max(p[3].count("\n") + 1 for p in layout)
    fig_w, fig_h = x + 1.4, head + height + 0.13 * lines + 0.3
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=DPI)
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#f0f0f0")
    top = fig_h - head
    for (table, cols, values, off, text), (x0, width, ylabels, heading) in zip(panels, layout):
        height = CELL_H * len(table.rows)
        ax = fig.add_axes([x0 / fig_w, (top - height) / fig_h, width / fig_w, height / fig_h])
        image = ax.imshow(np.ma.masked_invalid(off), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto",
                          interpolation="nearest")
        for i in range(len(table.rows)):
            for j in range(len(cols)):
                dark = bool(text[i][j]) and abs(off[i, j]) > 0.6 * lim
                if text[i][j]:
                    ax.text(j, i - 0.17, text[i][j][0], ha="center", va="center", fontsize=8.5, weight="bold",
                            color="white" if dark else "black")
                    ax.text(j, i + 0.2, "\n".join(text[i][j][1:]), ha="center", va="center", fontsize=5.8,
                            color="white" if dark else "#222222", linespacing=1.05)
                else:
                    ax.text(j, i, "-", ha="center", va="center", fontsize=8, color="#777777")
        ax.set_xticks(range(len(cols)), [_column_label(c) if c else "mean" for c in cols], fontsize=7)
        ax.set_yticks(range(len(table.rows)), ylabels or [], fontsize=8)
        ax.tick_params(length=0)
        ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(table.rows) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_title(heading, fontsize=9)
    cax = fig.add_axes([(x + 0.3) / fig_w, (top - BAR_H) / fig_h, 0.15 / fig_w, BAR_H / fig_h])
    bar = fig.colorbar(image, cax=cax)
    bar.ax.tick_params(labelsize=7)
    bar.set_label("points vs " + ("baseline" if baseline else "column mean"), fontsize=7)
    caption = ("Cell: value (%), [95% interval]" + ("; sd: std over seeds" if any(
        t.stage == "fewshot" for t in board.tables) else "")
               + (f". +x: points above the baseline {baseline}'s cell, * significant (paired test, Holm-corrected "
                  "p < 0.05). Colour: that difference where established (linear probe, zero-shot: *; few-shot: the two "
                  "95% intervals apart), else neutral" if baseline else
                  ". Colour: points above (blue) or below (red) the column's mean, one scale for every panel"))
    fig.text(layout[0][0] / fig_w, 0.1 / fig_h, textwrap.fill(caption, max(60, int((x - layout[0][0]) / 0.052))),
             fontsize=7, color="#444444", va="top")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic.replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight",
                                                     pad_inches=0.15))
    finally:
        plt.close(fig)
