"""dvc.yaml's code dependencies, generated: each stage depends on its script, every clipprobe module the
script imports (transitively, imports inside functions included, each package's __init__.py with it),
the paths `clipprobe.stage.STAGES` says it reads, and `${param}` for params naming a file it reads.

    python tools/deps.py           # rewrite the deps of every stage in dvc.yaml
    python tools/deps.py --check   # exit 1, naming the stage and file, where dvc.yaml differs

Only the `deps:` lists are written; everything else in dvc.yaml (params, outs, metrics, plots,
comments) stays as it is.  This folder is outside the package, so the tool is in no stage's closure.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # run as a script: `tools` importable
from tools import rewrite  # noqa: E402

SRC = REPO / "src"
PACKAGE = "clipprobe"


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of module `name` (`clipprobe.data.registry`): a module or a package's __init__.py."""
    base = src.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _with_parents(name: str) -> set[str]:
    """Importing `a.b.c` runs `a`, `a.b` and `a.b.c`."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imported_modules(path: Path, src: Path = SRC) -> set[str]:
    """The clipprobe modules a file imports anywhere in it, with the packages above them."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise SystemExit(f"{path}:{node.lineno}: relative import; import clipprobe modules by their full name")
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if (name == PACKAGE or name.startswith(PACKAGE + ".")) and module_file(name, src):
                found |= _with_parents(name)
    return found


def closure(script: Path, src: Path = SRC) -> set[str]:
    """Every clipprobe module `script` runs, by name."""
    todo, seen = imported_modules(script, src), set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo |= imported_modules(module_file(mod, src), src)
    return seen


def closure_files(script: Path, repo: Path = REPO) -> list[str]:
    """The repo-relative files of `closure(script)`, sorted."""
    return sorted(str(module_file(m, repo / "src").relative_to(repo)) for m in closure(script, repo / "src"))


def stage_deps(name: str, repo: Path = REPO) -> list[str]:
    """What dvc.yaml's stage `name` depends on, in the order dvc.yaml lists it."""
    from clipprobe.stage import STAGES

    declared = STAGES[name]
    script = repo / "stages" / f"{name}.py"
    return ([f"stages/{name}.py", *closure_files(script, repo), *(str(p) for p in declared.reads),
             *(f"${{{param}}}" for param in declared.param_reads)])


def generate(text: str, repo: Path = REPO) -> str:
    """`text` (dvc.yaml) with each stage's `deps:` list replaced by `stage_deps`."""
    lines, out, stage, i = text.splitlines(keepends=True), [], None, 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if indent == 2 and line.rstrip().endswith(":") and not line.lstrip().startswith("#"):
            stage = line.strip()[:-1]
        i += 1
        if indent == 4 and line.strip() in ("deps:", "deps: []"):   # a new stage's list may start empty
            while i < len(lines) and lines[i].startswith("      - "):
                i += 1
            out += ["    deps:\n", *(f"      - {d}\n" for d in stage_deps(stage, repo))]
        else:
            out.append(line)
    return "".join(out)


if __name__ == "__main__":
    sys.exit(rewrite(REPO / "dvc.yaml", generate, __doc__))
