"""The CLIP paper's data-efficiency comparison (its Figures 6-7): few-shot against zero-shot.

The few-shot curve against zero-shot and the full-data probe, and how many labelled images per
class zero-shot is worth, from the three stages' records (results/*.json), each score with its 95%
interval."""

from __future__ import annotations

import json
import math
from pathlib import Path

from clipprobe import atomic, notes
from clipprobe.errors import ClipprobeError
from clipprobe.report import names

DPI = 150


def _two_figures(x: float) -> float:
    """Two significant figures: the crossing is interpolated between k a factor 2 apart on a mean
    of a few seeds, so a third figure would be noise (4.757 reads as 4.8, 12.34 as 12)."""
    return float(f"{x:.2g}")


def shots_worth(curve: dict[int, float], zeroshot: float) -> float | str | None:
    """Where the few-shot mean top-1, interpolated linearly in log2(k), first reaches zero-shot
    (the paper's Figure 7), to two significant figures; "< k_min" when the smallest k already
    beats it, "> k_max" when none reaches it; None without a few-shot point."""
    if not curve:
        return None
    ks = sorted(curve)
    if curve[ks[0]] >= zeroshot:
        return ks[0] if curve[ks[0]] == zeroshot else f"< {ks[0]}"
    for lo, hi in zip(ks, ks[1:]):
        if curve[hi] >= zeroshot:
            t = (zeroshot - curve[lo]) / (curve[hi] - curve[lo])
            return _two_figures(2 ** (math.log2(lo) + t * (math.log2(hi) - math.log2(lo))))
    return f"> {ks[-1]}"


def full_data_label(limit_per_class: int | None) -> str:
    """"full-data", or "full-data (N per class)" where data.limit_per_class caps it."""
    return "full-data" if limit_per_class is None else f"full-data ({limit_per_class} per class)"


def _headline(record: dict) -> dict | None:
    """The record's headline {value, low, high}, None where it scored nothing (e.g. no text tower)."""
    return record["metrics"][record["metric"]] if record.get("metric") in record.get("metrics", {}) else None


def compare(fewshot: dict, zeroshot: dict, full: dict, limit_per_class: int | None = None) -> dict:
    """`results/compare.json` from the three stages' records, on the dataset's headline metric
    (`metric`: top-1 for most, as the paper's Figure 7 compares each dataset on its own).  A model
    without a text tower has no zero-shot score: `zeroshot` and what it is worth are null, and
    `zeroshot_skipped` says why."""
    for name, rec in (("fewshot", fewshot), ("zeroshot", zeroshot)):
        if rec.get("metric") and rec.get("features") != full.get("features"):
            raise ClipprobeError(f"results/{name}.json scored other test features than results/evaluate.json "
                                 f"({rec.get('dataset')}, {rec.get('model')} against {full.get('dataset')}, "
                                 f"{full.get('model')}); run `dvc repro` to bring them up to date")
    zs = _headline(zeroshot)
    curve = {int(k): r["score"] for k, r in fewshot.get("results", {}).items()}
    said = []
    if curve and full.get("n_train_per_class_min"):
        said = [n for n in (notes.full_data_below_shots(full["n_train_per_class_min"], max(curve)),) if n]
    return {"dataset": full["dataset"], "model": full["model"], "weights": full["weights"], "metric": full["metric"],
            "n_test": full["n_test"], "full_data_label": full_data_label(limit_per_class),
            "full_data": _headline(full), "zeroshot": zs, "zeroshot_skipped": zeroshot.get("skipped"),
            "fewshot": {str(k): v for k, v in sorted(curve.items())}, "seeds": fewshot.get("seeds"),
            "zeroshot_worth_shots": shots_worth({k: v["value"] for k, v in curve.items()}, zs["value"]) if zs else None,
            "notes": said}


def plot(result: dict, path: Path) -> None:
    """The test score against shots per class (log2 axis): the few-shot mean over seeds with its
    95% interval over test images (bars) and ±1 std over seeds (band); zero-shot and the full-data
    probe as horizontal lines with their intervals as light bands. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = {int(k): v for k, v in result["fewshot"].items()}
    ks = sorted(curve)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=DPI)
    ax.set_xscale("log", base=2)
    if ks:
        mean = [curve[k]["value"] for k in ks]
        std = [curve[k]["std"] for k in ks]
        ax.fill_between(ks, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color="C0",
                        alpha=0.18, linewidth=0, label=f"± 1 std over {result.get('seeds')} seeds")
        ax.errorbar(ks, mean, yerr=[[m - curve[k]["low"] for k, m in zip(ks, mean)],
                                    [curve[k]["high"] - m for k, m in zip(ks, mean)]],
                    fmt="o-", color="C0", capsize=3, label="few-shot linear probe (mean, 95% interval)")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlim(ks[0] / 1.4, ks[-1] * 1.4)
    else:
        ax.text(0.5, 0.5, "no few-shot k could be run (see results/fewshot.json)", transform=ax.transAxes,
                ha="center", va="center")
    for key, color, style, label in (
            ("zeroshot", "C3", "--", "zero-shot" + (f" (worth {result['zeroshot_worth_shots']} shots)"
                                                    if result["zeroshot_worth_shots"] is not None else "")),
            ("full_data", "C2", ":", f"{result['full_data_label']} linear probe")):
        m = result[key]
        if m is None:   # a legend line without a mark: what happened to zero-shot
            ax.plot([], [], " ", label=f"zero-shot: - ({result.get('zeroshot_skipped') or 'no score'})")
            continue
        ax.axhspan(m["low"], m["high"], color=color, alpha=0.12, linewidth=0)
        ax.axhline(m["value"], color=color, linestyle=style,
                   label=f"{label}: {m['value']:.1f}% [{m['low']:.1f}, {m['high']:.1f}]")
    ax.set_xlabel("labelled training images per class (log2 scale)")
    ax.set_ylabel(f"test {names.metric(result['metric'])} (%), {result['n_test']} images")
    ax.set_title(f"{names.short(result['dataset'], dataset=True)}: {names.short(result['model'])} "
                 f"({names.short(result['weights'])})", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic.replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)


def _score(m: dict | None) -> str:
    return "     -" if m is None else f"{m['value']:6.2f}% [{m['low']:.2f}, {m['high']:.2f}]"


def summary(results_dir: Path = Path("results")) -> str:
    """The three results in a few lines, as `make demo` prints them."""
    fewshot = json.loads((results_dir / "fewshot.json").read_text())
    result = json.loads((results_dir / "compare.json").read_text())
    full = f"{result['full_data_label']} linear probe"
    width = max(len(full), 20)
    lines = [f"{names.short(result['dataset'], dataset=True)}, {names.short(result['model'])} ({result['weights']}), "
             f"test {names.metric(result['metric'])} on {result['n_test']} images [95% interval]:",
             f"  {full:<{width}} {_score(result['full_data'])}"]
    for k, r in result["fewshot"].items():
        lines.append(f"  {k + '-shot linear probe':<{width}} {_score(r)} ± {r['std']:.2f} over "
                     f"{result['seeds']} seeds")
    lines += [f"  few-shot k={s['k']} skipped: class {s['class']!r} has {s['have']} {s['split']} images"
              for s in fewshot["skipped"]]
    worth = f" ({result.get('zeroshot_skipped') or 'not scored'})" if not result["zeroshot"] else \
        f" (worth {result['zeroshot_worth_shots']} labelled images per class)" if result["zeroshot_worth_shots"] \
        is not None else " (no few-shot curve to weigh it against: fewshot.shots is empty or every k was skipped)"
    lines.append(f"  {'zero-shot':<{width}} {_score(result['zeroshot'])}{worth}")
    lines += [f"  note: {n}" for n in result["notes"]]
    return "\n".join(lines)
