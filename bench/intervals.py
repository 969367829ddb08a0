"""What the 95% intervals add to `evaluate`: the test metrics alone (`metrics.metrics`, what evaluate
scored before) against the metrics with their bootstrap intervals (`intervals.metrics_with_intervals`,
what it scores now: 1,000 resamples of the test images), on the same scores, in one run.

    python bench/intervals.py                         # 50,000 test images x 1,000 classes, median of 3
    python bench/intervals.py --n 10000 --classes 100 --repeats 5
    python bench/intervals.py --map11                 # VOC2007's shape: 4,952 images x 20 classes, 11-point mAP

Scores are seeded random logits with the true class raised (about 25% top-1), float32 as the probe's
`predict_proba` gives them to evaluate. It prints both times (alternating runs) and the intervals' own
work timed alone (the per-image correctness and the resamples): what they add to evaluate.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from clipprobe import intervals, metrics


def _scores(n: int, k: int, multi_label: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    if multi_label:
        y = (rng.random((n, k)) < 0.08).astype(np.int8)
        return y, (rng.standard_normal((n, k)) + 1.5 * y).astype(np.float32), metrics.MAP11
    y = rng.integers(0, k, n)
    s = rng.standard_normal((n, k)).astype(np.float32)
    s[np.arange(n), y] += 2.5
    return y, s, metrics.TOP1


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="test images")
    ap.add_argument("--classes", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--map11", action="store_true", help="multi-label: 4,952 x 20, the 11-point mAP")
    args = ap.parse_args()
    n, k = (4952, 20) if args.map11 else (args.n, args.classes)
    y, s, metric = _scores(n, k, args.map11)
    classes = np.arange(k)
    names = [m for m in metrics.metrics(y, s, classes, metric) if m not in ("metric", "score")]
    alone, both, own = [], [], []
    for _ in range(args.repeats):   # alternating, so a load change hits both sides alike
        alone.append(_timed(lambda: metrics.metrics(y, s, classes, metric)))
        both.append(_timed(lambda: intervals.metrics_with_intervals(y, s, classes, metric)))
        own.append(_timed(lambda: intervals.scored(intervals.per_image(y, s, classes), names)))
    med = statistics.median
    print(f"{n:,} test images x {k:,} classes, {intervals.RESAMPLES:,} resamples of {', '.join(names)}, "
          f"median of {args.repeats}")
    print(f"  metrics alone:            {med(alone):7.2f} s")
    print(f"  metrics with intervals:   {med(both):7.2f} s  ({med(both) / med(alone):.2f}x)")
    print(f"  the intervals' own work:  {med(own):7.2f} s  (per-image correctness and the resamples: "
          "what evaluate adds)")

if __name__ == "__main__":
    main()
