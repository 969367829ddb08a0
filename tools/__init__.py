"""Repo tools outside the package (in no stage's closure): files generated from the code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def rewrite(path: Path, generate, doc: str, argv=None) -> int:
    """The command line of a tool that regenerates `path` from the code: rewrite it, or with
    --check exit 1 where it differs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"only check; exit 1 where {path.name} differs")
    args = parser.parse_args(argv)
    text = path.read_text()
    new = generate(text)
    if new == text:
        return 0
    if args.check:
        print(f"{path}: out of date with the code; run python tools/{Path(sys.argv[0]).name}", file=sys.stderr)
        return 1
    path.write_text(new)
    print(f"rewrote {path}")
    return 0
