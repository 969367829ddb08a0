"""The README's generated tables: the datasets (from the registry's entries) and the modules (from each
module's docstring), between `<!-- NAME table -->` and `<!-- /NAME table -->` markers.

    python tools/readme_tables.py           # rewrite both tables in README.md
    python tools/readme_tables.py --check   # exit 1 where README.md differs

Tests hold the README to this output, so the tables never drift from the code.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # run as a script: `tools` importable
from tools import rewrite  # noqa: E402

PACKAGE = REPO / "src" / "clipprobe"


def dataset_table() -> str:
    """One row per registry entry: name, loader, the paper's splits and their source, metric, download."""
    from clipprobe.data import registry

    rows = ["| `data.name` | loader | splits (paper's train / val / test) | source of the splits | metric "
            "| download |", "|---|---|---|---|---|---|"]
    for d in registry.REGISTRY.values():
        loader = f"torchvision `{d.loader}`" if d.loader[0].isupper() else f"clipprobe `{d.loader}` reader"
        where = "automatic" if d.download is None else d.download.format(root="data.root")
        rows.append(f"| `{d.name}` | {loader} | {d.split_text()} | {d.split_source} | `{d.metric}` | {where} |")
    return "\n".join(rows)


def summary(path: Path) -> str:
    """A module's docstring up to the end of its first sentence, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    m = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", re.sub(r"`[^`]*`", lambda c: "x" * len(c[0]), text))
    return (text[:m.start()] if m else text).strip()


def module_table() -> str:
    """One row per module of the package, grouped by subpackage in pipeline order."""
    order = ["", "data", "encode", "probe", "zeroshot", "report"]
    groups = sorted({p.parent.relative_to(PACKAGE).as_posix().replace(".", "") for p in PACKAGE.rglob("*.py")},
                    key=lambda g: (order.index(g) if g in order else len(order), g))
    rows = ["| module | holds |", "|---|---|"]
    for group in groups:
        folder = PACKAGE / group
        for path in sorted(folder.glob("*.py")):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            name = f"{group}/{path.stem}" if group else path.stem
            rows.append(f"| `{name}` | {summary(path)} |")
    return "\n".join(rows)


TABLES = {"dataset": dataset_table, "module": module_table}


def generate(text: str) -> str:
    """`text` (the README) with each marked table replaced by its generated one."""
    for name, make in TABLES.items():
        start, end = f"<!-- {name} table -->", f"<!-- /{name} table -->"
        if start not in text or end not in text:
            raise SystemExit(f"README.md: no {start} ... {end} markers")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{make()}\n{end}{tail}"
    return text


if __name__ == "__main__":
    sys.exit(rewrite(REPO / "README.md", generate, __doc__))
