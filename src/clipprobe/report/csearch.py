"""The C search as a figure: validation score at every fitted C (log axis), the chosen C marked.

With a fixed C there is no search: the figure shows the given C on the same axis, so `dvc plots`
never shows an empty chart."""

from __future__ import annotations

from pathlib import Path

from clipprobe import atomic
from clipprobe.report import names

DPI = 150


def plot(path: Path, dataset: str, metric: str, C: float, fits: list[tuple[float, float, int]] | None,
         val_score: float | None = None, n_val: int | None = None, notes: list[str] = ()) -> None:
    """`fits`: (C, validation score, iterations) of each fit, None for a given C. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=DPI)
    ax.set_xscale("log")
    metric_name = names.metric(metric)
    if fits:
        cs, scores = zip(*sorted((c, s) for c, s, _ in fits))
        ax.plot(cs, scores, "-", color="C0", alpha=0.5, linewidth=1)
        ax.plot(cs, scores, "o", color="C0", markersize=5, label=f"each C fitted ({len(fits)} fits)")
        ax.plot([C], [val_score], "*", color="C3", markersize=16, zorder=3,
                label=f"chosen C = {C:.3g} (validation {val_score:.1f}%)")
        ax.axvline(C, color="C3", linestyle=":", linewidth=1)
        ax.set_ylabel(f"validation {metric_name} (%)" + (f", {n_val} images" if n_val else ""))
        ax.set_xlim(min(cs) / 3, max(cs) * 3)
        title = f"{names.short(dataset, dataset=True)}: C search"
    else:
        ax.axvspan(1e-6, 1e6, color="C0", alpha=0.07, linewidth=0, label="the range C: auto searches")
        ax.axvline(C, color="C3", linewidth=2, label=f"C = {C:.3g}, given (no search)")
        ax.set_xlim(1e-7, 1e7)
        ax.set_yticks([])
        ax.text(C, 0.5, f"  C = {C:.3g}\n  given in params.yaml:\n  no validation split, no search",
                transform=ax.get_xaxis_transform(), va="center", fontsize=9)
        title = f"{names.short(dataset, dataset=True)}: C given"
    ax.set_xlabel("C (inverse L2 strength, log scale)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if notes:
        fig.text(0.01, 0.005, "\n".join(f"note: {n}" for n in notes), fontsize=6, color="C3", va="bottom",
                 wrap=True)
        fig.subplots_adjust(bottom=0.16 + 0.04 * len(notes))
    else:
        fig.tight_layout()
    try:
        atomic.replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)
