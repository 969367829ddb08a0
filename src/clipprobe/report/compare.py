"""The CLIP paper's data-efficiency comparison (its Figures 6-7): few-shot against zero-shot.

The few-shot curve against zero-shot and the full-data probe, and how many labelled images per
class zero-shot is worth."""

from __future__ import annotations

import json
import math
from pathlib import Path

from clipprobe import atomic


def shots_worth(curve: dict[int, float], zeroshot: float) -> float | str | None:
    """Where the few-shot mean top-1, interpolated linearly in log2(k), first reaches zero-shot
    (the paper's Figure 7); "< k_min" when the smallest k already beats it, "> k_max" when none
    reaches it; None without a few-shot point."""
    if not curve:
        return None
    ks = sorted(curve)
    if curve[ks[0]] >= zeroshot:
        return ks[0] if curve[ks[0]] == zeroshot else f"< {ks[0]}"
    for lo, hi in zip(ks, ks[1:]):
        if curve[hi] >= zeroshot:
            t = (zeroshot - curve[lo]) / (curve[hi] - curve[lo])
            return round(2 ** (math.log2(lo) + t * (math.log2(hi) - math.log2(lo))), 3)
    return f"> {ks[-1]}"


def compare(fewshot: dict, zeroshot: dict, full: dict) -> dict:
    """`metrics/compare.json` from the three stages' metrics, on the dataset's headline metric
    (`metric`: top-1 for most, as the paper's Figure 7 compares each dataset on its own).  A model
    without a text tower has no zero-shot score: `zeroshot` and what it is worth are null, and
    `zeroshot_skipped` says why."""
    curve = {int(k): r["score_mean"] for k, r in fewshot["results"].items()}
    zs = zeroshot.get("score")
    skipped = {} if zs is not None else {"zeroshot_skipped": zeroshot.get("reason", "no zero-shot score")}
    return {"dataset": full.get("dataset"), "model": full.get("model"), "weights": full.get("weights"),
            "metric": full["metric"], "full_data": full["score"], "zeroshot": zs,
            "fewshot": {str(k): v for k, v in sorted(curve.items())},
            "zeroshot_worth_shots": None if zs is None else shots_worth(curve, zs), **skipped}


def plot(fewshot: dict, result: dict, path: Path) -> None:
    """The test score against shots per class (log2 axis): the few-shot mean with a band of one
    std over seeds, zero-shot and the full-data probe as horizontal lines. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(int(k) for k in fewshot["results"])
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    ax.set_xscale("log", base=2)
    if ks:
        mean = [fewshot["results"][str(k)]["score_mean"] for k in ks]
        std = [fewshot["results"][str(k)]["score_std"] for k in ks]
        ax.fill_between(ks, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color="C0", alpha=0.2, linewidth=0, label=f"± std over {fewshot['seeds']} seeds")
        ax.plot(ks, mean, "o-", color="C0", label="few-shot linear probe (mean)")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
    else:
        ax.text(0.5, 0.5, "no few-shot k could be run (see metrics/fewshot.json)", transform=ax.transAxes,
                ha="center", va="center")
    if result["zeroshot"] is not None:
        ax.axhline(result["zeroshot"], color="C3", linestyle="--",
                   label=f"zero-shot {result['zeroshot']:.1f}% (worth {result['zeroshot_worth_shots']} shots)")
    else:   # a legend line without a mark: what happened to zero-shot
        ax.plot([], [], " ", label=f"zero-shot: - ({result.get('zeroshot_skipped', 'no score')})")
    ax.axhline(result["full_data"], color="C2", linestyle=":",
               label=f"full-data linear probe {result['full_data']:.1f}%")
    if ks:
        ax.set_xlim(ks[0] / 1.3, ks[-1] * 1.3)
    ax.set_xlabel("labelled training images per class (log2 scale)")
    ax.set_ylabel(f"test {result['metric'].replace('_', ' ')} (%)")
    ax.set_title(f"{result['dataset']}: {result['model']} ({result['weights']})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic.replace(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def summary(metrics_dir: Path = Path("metrics")) -> str:
    """The three results in a few lines, as `make demo` prints them."""
    fewshot = json.loads((metrics_dir / "fewshot.json").read_text())
    result = json.loads((metrics_dir / "compare.json").read_text())
    lines = [f"{result['dataset']}, {result['model']} ({result['weights']}), test {result['metric']}:",
             f"  full-data linear probe  {result['full_data']:6.2f}%"]
    for k, r in fewshot["results"].items():
        lines.append(f"  {k:>3}-shot linear probe   {r['score_mean']:6.2f}% ± {r['score_std']:.2f} "
                     f"({len(r['per_seed'])} seeds)")
    lines += [f"  few-shot k={s['k']} skipped: class {s['class']!r} has {s['have']} {s['split']} images"
              for s in fewshot["skipped"]]
    if result["zeroshot"] is None:
        lines.append(f"  zero-shot                    - ({result.get('zeroshot_skipped', 'no score')})")
    else:
        lines.append(f"  zero-shot               {result['zeroshot']:6.2f}% "
                     f"(worth {result['zeroshot_worth_shots']} labelled images per class)")
    return "\n".join(lines)
