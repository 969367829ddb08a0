"""What every stage script shares: output paths, what each stage reads and writes, one-line errors.

`STAGES` is the one declaration of each stage's paths: the stage scripts use these constants,
and a test holds dvc.yaml's deps and outs to it (and each stage's code deps to its imports).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from clipprobe.errors import ClipprobeError

INPUTS = Path("inputs")  # what the inputs stage writes down about the user's files
DATA_LISTING = INPUTS / "data.tsv"    # the ImageFolder's files: prepare depends on it
MODEL_RECORD = INPUTS / "model.json"  # model.name / model.weights with file hashes: extract depends on it
PREPARED = Path("data/prepared")
FEATURES = Path("features")
TUNED = Path("tuned")   # the search's probe at the chosen C: the refit's warm start
PROBE = Path("probe")   # the fitted probe: probe.npz + probe.json
METRICS = Path("metrics")   # DVC metrics: numbers only
RESULTS = Path("results")   # each scoring stage's record (identity, every metric and interval, notes) and predictions
TEXT = Path("text")     # zero-shot class embeddings from the text tower
PLOTS = Path("plots")   # figures (PNG) registered with `dvc plots`


@dataclass(frozen=True)
class StagePaths:
    reads: tuple[Path, ...]
    writes: tuple[Path, ...]
    param_reads: tuple[str, ...] = ()  # params whose value is a path the stage reads (`${...}` deps)


# tune and train read features/train and, where the dataset has one, features/val: they
# depend on features/ as a whole, which only extraction writes.
STAGES = {
    "inputs": StagePaths(reads=(), writes=(DATA_LISTING, MODEL_RECORD)),
    "prepare": StagePaths(reads=(DATA_LISTING,), writes=(PREPARED,)),
    "extract": StagePaths(reads=(PREPARED, MODEL_RECORD), writes=(FEATURES,)),
    "tune": StagePaths(reads=(FEATURES,),
                       writes=(TUNED, METRICS / "tune.json", RESULTS / "tune.json", RESULTS / "tune_curve.csv",
                               PLOTS / "tune.png")),
    "train": StagePaths(reads=(FEATURES, RESULTS / "tune.json", TUNED), writes=(PROBE,)),
    "evaluate": StagePaths(reads=(PROBE, FEATURES / "test"),
                           writes=(METRICS / "accuracy.json", RESULTS / "evaluate.json", RESULTS / "evaluate.parquet",
                                   METRICS / "confusion.csv", METRICS / "per_class.csv", PLOTS / "confusion.png")),
    "fewshot": StagePaths(reads=(FEATURES,),
                          writes=(METRICS / "fewshot.json", RESULTS / "fewshot.json", METRICS / "fewshot.csv")),
    "text": StagePaths(reads=(PREPARED / "info.json", MODEL_RECORD), writes=(TEXT,), param_reads=("zeroshot.templates",)),
    "zeroshot": StagePaths(reads=(TEXT, FEATURES / "test"),
                           writes=(METRICS / "zeroshot.json", RESULTS / "zeroshot.json", RESULTS / "zeroshot.parquet")),
    "compare": StagePaths(reads=(RESULTS / "evaluate.json", RESULTS / "zeroshot.json", RESULTS / "fewshot.json"),
                          writes=(RESULTS / "compare.json", PLOTS / "fewshot.png")),
}


def project_root(script: str) -> Path:
    """The project a stage script belongs to: the folder above `stages/`, holding dvc.yaml."""
    root = Path(script).resolve().parent.parent
    if not (root / "dvc.yaml").is_file():
        raise ClipprobeError(f"{script}: no dvc.yaml in {root}; run stage scripts from a clipprobe project "
                             "(`dvc repro`, or `python stages/<stage>.py` in the project root)")
    return root


def run(main) -> None:
    """Run a stage's main() in its project root (outputs are relative to it, wherever the script
    was started from); a ClipprobeError becomes one line on stderr and exit status 1."""
    try:
        os.chdir(project_root(sys.modules[main.__module__].__file__))
        main()
    except ClipprobeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
