"""The leaderboard's linear-probe table as a heatmap PNG: models x datasets, values in the cells.

Datasets differ in difficulty (MNIST near 99 %, Country211 near 20 %), so each column is coloured
by where its value lies between that column's worst and best: the colour compares models on a
dataset, the number gives the value. The best of each column is bold and boxed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipprobe import atomic
from clipprobe.report.leaderboard import Leaderboard, column_label, labels

CELL_W, CELL_H = 0.6, 0.34      # inches; at dpi 100 a cell is 60 x 34 px, room for "100.00" at 9 pt
DPI = 100


def _matrix(board: Leaderboard):
    table = board.tables[0]
    cols = [*table.columns, None]
    values = np.full((len(board.rows), len(cols)), np.nan)
    for i, r in enumerate(board.rows):
        for j, c in enumerate(cols):
            v = table.value(r, c)
            if v is not None:
                values[i, j] = v
    return table, cols, values


def _relative(values: np.ndarray) -> np.ndarray:
    """Each column scaled to 0 (its worst) .. 1 (its best); 0.5 where a column has one value."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        rel = (values - lo) / (hi - lo)
    return np.where(np.isfinite(rel), rel, np.where(np.isnan(values), np.nan, 0.5))


def draw(board: Leaderboard, path: str | Path) -> None:
    """Write the heatmap of `board`'s first (linear-probe) table to `path`, atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    table, cols, values = _matrix(board)
    rel = _relative(values)
    datasets = labels((d for d, _ in table.columns), dataset=True)
    models, weights = labels(r[0] for r in board.rows), labels(r[1] for r in board.rows)
    xlabels = [column_label(c, datasets) if c else "mean" for c in cols]
    ylabels = [f"{models[m]} · {weights[w]} · {layer}" for m, w, layer in board.rows]
    n_rows, n_cols = values.shape

    left = 0.2 + 0.075 * max(map(len, ylabels))
    bottom = 0.3 + 0.055 * max(map(len, xlabels))
    fig = plt.figure(figsize=(left + CELL_W * n_cols + 1.4, bottom + CELL_H * n_rows + 0.9), dpi=DPI)
    ax = fig.add_axes([left / fig.get_figwidth(), bottom / fig.get_figheight(),
                       CELL_W * n_cols / fig.get_figwidth(), CELL_H * n_rows / fig.get_figheight()])
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(rel), cmap=cmap, vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            if np.isnan(v):
                ax.text(j, i, "-", ha="center", va="center", fontsize=9, color="#777777")
                continue
            best = v == np.nanmax(values[:, j])
            colour = "black" if rel[i, j] > 0.55 else "white"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color=colour,
                    fontweight="bold" if best else "normal")
            if best:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=2))
    ax.axvline(n_cols - 1.5, color="white", linewidth=4)       # the mean column stands apart
    ax.set_xticks(range(n_cols), xlabels, rotation=40, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(n_rows), ylabels, fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    n = len(board.shown)
    ax.set_title(f"{table.title[0].upper()}{table.title[1:]}: test headline metric (%)\n"
                 f"{n} experiment{'s' * (n != 1)}; boxed: the best of its column", fontsize=10, loc="left", pad=8)
    cax = fig.add_axes([(left + CELL_W * n_cols + 0.25) / fig.get_figwidth(), bottom / fig.get_figheight(),
                        0.15 / fig.get_figwidth(), CELL_H * n_rows / fig.get_figheight()])
    bar = fig.colorbar(image, cax=cax, ticks=[0, 1])
    bar.ax.set_yticklabels(["worst", "best"], fontsize=8)
    bar.set_label("within its column", fontsize=8)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic.replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight",
                                                     pad_inches=0.15))
    finally:
        plt.close(fig)
