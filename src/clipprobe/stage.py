"""What every stage script shares: where outputs live, and one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

from clipprobe.errors import ClipprobeError

PREPARED = Path("data/prepared")
FEATURES = Path("features")
MODELS = Path("models")
TUNED = Path("tuned")   # the search's probe at the chosen C: the refit's warm start
METRICS = Path("metrics")


def run(main) -> None:
    """Run a stage's main(); a ClipprobeError becomes one line on stderr and exit status 1."""
    try:
        main()
    except ClipprobeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
