"""compare: few-shot against zero-shot and the full-data probe -> metrics/compare.json (how many
shots zero-shot is worth) and plots/fewshot.png."""

import json

from clipprobe import atomic
from clipprobe.report import compare
from clipprobe.stage import METRICS, PLOTS, run


def main():
    fewshot, zeroshot, full = (json.loads((METRICS / f"{name}.json").read_text())
                               for name in ("fewshot", "zeroshot", "accuracy"))
    result = compare.compare(fewshot, zeroshot, full)
    compare.plot(fewshot, result, PLOTS / "fewshot.png")
    atomic.write_json(METRICS / "compare.json", result)
    print(compare.summary(METRICS))


if __name__ == "__main__":
    run(main)
