"""dvc.yaml is held to the code: each stage's deps are exactly its script, every clipprobe module
it imports (directly or not) and every path it reads; its outs are exactly what it writes."""

import ast
from pathlib import Path

import yaml

from clipprobe import stage

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "clipprobe"


def _imported_modules(path: Path) -> set[str]:
    """clipprobe modules a file imports anywhere (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("clipprobe.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "clipprobe":
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").is_file()}
            elif node.module.startswith("clipprobe."):
                found.add(node.module.split(".")[1])
    return found


def import_closure(script: Path) -> set[str]:
    """Repo-relative files of every clipprobe module `script` runs: any import of the package
    runs its __init__ (and what that imports)."""
    todo, seen = _imported_modules(script) | {"__init__"}, set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo |= _imported_modules(PACKAGE / f"{mod}.py")
    return {f"src/clipprobe/{m}.py" for m in seen}


def _dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _outs(spec: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o
            for key in ("outs", "metrics", "plots") for o in spec.get(key, [])}


def test_every_stage_in_dvc_yaml_is_declared_in_stage_py_and_has_a_script():
    assert set(_dvc_stages()) == set(stage.STAGES)
    for name, spec in _dvc_stages().items():
        assert spec["cmd"] == f"python stages/{name}.py", name


def test_each_stage_depends_exactly_on_its_script_imports_and_reads():
    for name, spec in _dvc_stages().items():
        script = REPO / "stages" / f"{name}.py"
        declared = stage.STAGES[name]
        expected = ({f"stages/{name}.py"} | import_closure(script) | {str(p) for p in declared.reads}
                    | {f"${{{param}}}" for param in declared.param_reads})
        listed = set(spec.get("deps", []))
        assert not expected - listed, f"dvc.yaml: stage {name} misses deps {sorted(expected - listed)}"
        assert not listed - expected, f"dvc.yaml: stage {name} lists deps it does not use {sorted(listed - expected)}"


def test_each_stage_outputs_exactly_what_stage_py_says_it_writes():
    for name, spec in _dvc_stages().items():
        assert _outs(spec) == {str(p) for p in stage.STAGES[name].writes}, name


def test_stage_scripts_use_only_the_paths_their_stage_declares():
    paths = {k: v for k, v in vars(stage).items() if isinstance(v, Path)}
    for name in stage.STAGES:
        declared = stage.STAGES[name].reads + stage.STAGES[name].writes
        tree = ast.parse((REPO / "stages" / f"{name}.py").read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in paths}
        for const in used:
            p = paths[const]
            assert any(p == d or p in d.parents or d in p.parents for d in declared), \
                f"stages/{name}.py uses {const} = {p}, which stage.STAGES[{name!r}] does not declare"


def test_import_closure_sees_indirect_and_lazy_imports():
    closure = import_closure(REPO / "stages" / "train.py")
    assert "src/clipprobe/torch_solver.py" in closure      # imported lazily inside probe.fit
    assert "src/clipprobe/devices.py" in closure           # imported by torch_solver
    assert "src/clipprobe/encoders.py" not in closure      # the probe never loads an encoder


def test_no_import_cycle_between_clipprobe_modules():
    graph = {p.stem: _imported_modules(p) - {p.stem} for p in PACKAGE.glob("*.py")}

    def visit(mod, path):
        assert mod not in path, f"import cycle: {' -> '.join(path + [mod])}"
        for dep in graph.get(mod, ()):
            visit(dep, path + [mod])

    for mod in graph:
        visit(mod, [])
