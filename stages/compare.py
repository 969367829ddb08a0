"""compare: few-shot against zero-shot and the full-data probe -> results/compare.json (how many
shots zero-shot is worth; notes on what the comparison rests on) and plots/fewshot.png."""

import json

from clipprobe import atomic, params
from clipprobe.report import compare
from clipprobe.stage import PLOTS, RESULTS, run


def main():
    p = params.load()
    fewshot, zeroshot, full = (json.loads((RESULTS / f"{name}.json").read_text())
                               for name in ("fewshot", "zeroshot", "evaluate"))
    result = compare.compare(fewshot, zeroshot, full, p.data.limit_per_class)
    compare.plot(result, PLOTS / "fewshot.png")
    atomic.write_json(RESULTS / "compare.json", result)
    print(compare.summary(RESULTS))


if __name__ == "__main__":
    run(main)
