"""Build the probe benchmark's features once (bench/benchsets.py) into bench/.cache/.

    python bench/make_features.py      # ~10 minutes on 2 cores; bench/probe.py builds them too when missing
"""

from pathlib import Path

import benchsets

CACHE = Path(__file__).resolve().parent / ".cache"

if __name__ == "__main__":
    for name in benchsets.SETS:
        x_tr, _, x_te, _ = benchsets.load(name, CACHE)
        print(f"{name}: train {x_tr.shape}, test {x_te.shape}")
