"""The test confusion matrix as a figure, with the count in each cell (scikit-learn's display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipprobe import atomic
from clipprobe.report.names import short

DPI = 150
MAX_COUNTS = 30   # classes up to which each cell's count is printed
MAX_NAMES = 100   # ... and their names on the axes


def plot(path: Path, y: np.ndarray | None, pred: np.ndarray | None, names: list[str], dataset: str) -> None:
    """Rows: true class, columns: predicted, counts of test images. `y` None (multi-label data has
    no single predicted class): a figure saying so. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(names)
    side = min(max(4.8, 0.45 * k + 2.5), 20)
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=DPI)
    title = f"{short(dataset, dataset=True)}: test confusion matrix"
    if y is None:
        ax.axis("off")
        ax.text(0.5, 0.5, "multi-label dataset: no single predicted class per image;\n"
                "metrics/per_class.csv holds each class's 11-point AP", ha="center", va="center")
    else:
        display = ConfusionMatrixDisplay.from_predictions(
            y, pred, labels=np.arange(k), display_labels=names if k <= MAX_NAMES else None, ax=ax, cmap="Blues",
            colorbar=True,
            include_values=k <= MAX_COUNTS, values_format="d", xticks_rotation="vertical",
            text_kw={"fontsize": 8 if k <= 12 else 6})
        title += f" ({len(y)} images" + (", counts by colour only)" if k > MAX_COUNTS else ")")
        if k > MAX_NAMES:
            ax.set_xticks([])
            ax.set_yticks([])
        display.im_.colorbar.set_label("test images")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    try:
        atomic.replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)
