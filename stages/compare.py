"""compare: few-shot against zero-shot and the full-data probe -> results/compare.json (how many
shots zero-shot is worth; notes on what the comparison rests on) and plots/fewshot.png."""

from clipprobe import atomic, params
from clipprobe.report import compare
from clipprobe.stage import PLOTS, RESULTS, run


def main():
    p = params.load()
    fewshot, zeroshot, full = (atomic.read_json(RESULTS / f"{name}.json", f"rerun `dvc repro -f {name}`")
                               for name in ("fewshot", "zeroshot", "evaluate"))
    result = compare.compare(fewshot, zeroshot, full, p.data.limit_per_class)
    compare.plot(result, PLOTS / "fewshot.png")
    atomic.write_json(RESULTS / "compare.json", result)
    zs, worth = result["zeroshot"], result["zeroshot_worth_shots"]   # the summary: make demo prints it, once
    print("compare: zero-shot " + (f"{zs['value']:.2f}%" if zs else f"- ({result['zeroshot_skipped'] or 'not scored'})")
          + (f" is worth {worth} labelled images per class" if worth is not None else "")
          + f"; {RESULTS / 'compare.json'}, {PLOTS / 'fewshot.png'}")


if __name__ == "__main__":
    run(main)
