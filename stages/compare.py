"""compare: few-shot against zero-shot and the full-data probe -> metrics/compare.json (how many
shots zero-shot is worth) and plots/fewshot.png."""

from clipprobe import atomic
from clipprobe.report import compare
from clipprobe.stage import METRICS, PLOTS, run


def main():
    fewshot, zeroshot, full = (atomic.read_json(METRICS / f"{name}.json", f"rerun `dvc repro -f {stage}`")
                               for name, stage in (("fewshot", "fewshot"), ("zeroshot", "zeroshot"),
                                                   ("accuracy", "evaluate")))
    result = compare.compare(fewshot, zeroshot, full)
    compare.plot(fewshot, result, PLOTS / "fewshot.png")
    atomic.write_json(METRICS / "compare.json", result)
    worth = result["zeroshot_worth_shots"]
    print(f"compare: zero-shot {result['zeroshot']:.2f}%"
          + (f" is worth {worth} labelled images per class" if worth is not None else " (no few-shot curve)")
          + f" against few-shot; {METRICS / 'compare.json'}, {PLOTS / 'fewshot.png'}")


if __name__ == "__main__":
    run(main)
