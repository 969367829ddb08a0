"""dvc.yaml is held to the code: each stage's deps are exactly what tools/deps.py generates (its
script, every clipprobe module it imports, directly or not, and every path it reads); its outs are
exactly what it writes; and the closures stay as narrow as the layout promises."""

import re
from pathlib import Path

import yaml

from clipprobe import stage
from tools import deps, readme_tables

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "clipprobe"


def _dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _outs(spec: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o
            for key in ("outs", "metrics", "plots") for o in spec.get(key, [])}


def _closure(name: str) -> set[str]:
    return set(deps.closure_files(REPO / "stages" / f"{name}.py"))


def test_every_stage_in_dvc_yaml_is_declared_in_stage_py_and_has_a_script():
    assert set(_dvc_stages()) == set(stage.STAGES)
    for name, spec in _dvc_stages().items():
        assert spec["cmd"] == f"python stages/{name}.py", name


def test_dvc_yaml_deps_are_what_the_deps_tool_generates():
    text = (REPO / "dvc.yaml").read_text()
    generated = deps.generate(text)
    for name, spec in yaml.safe_load(generated)["stages"].items():
        listed = _dvc_stages()[name].get("deps", [])
        missing, extra = set(spec.get("deps", [])) - set(listed), set(listed) - set(spec.get("deps", []))
        assert not missing, f"dvc.yaml: stage {name} misses deps {sorted(missing)}; run python tools/deps.py"
        assert not extra, f"dvc.yaml: stage {name} lists deps it does not use {sorted(extra)}; run python tools/deps.py"
    assert generated == text, "dvc.yaml's deps are out of order; run python tools/deps.py"


def test_each_stage_outputs_exactly_what_stage_py_says_it_writes():
    for name, spec in _dvc_stages().items():
        assert _outs(spec) == {str(p) for p in stage.STAGES[name].writes}, name


def test_stage_scripts_use_only_the_paths_their_stage_declares():
    import ast
    paths = {k: v for k, v in vars(stage).items() if isinstance(v, Path)}
    for name in stage.STAGES:
        declared = stage.STAGES[name].reads + stage.STAGES[name].writes
        tree = ast.parse((REPO / "stages" / f"{name}.py").read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in paths}
        for const in used:
            p = paths[const]
            assert any(p == d or p in d.parents or d in p.parents for d in declared), \
                f"stages/{name}.py uses {const} = {p}, which stage.STAGES[{name!r}] does not declare"


def test_closure_sees_indirect_and_lazy_imports_and_the_packages_they_run():
    closure = _closure("train")
    assert "src/clipprobe/probe/torch_solver.py" in closure      # imported lazily inside linear.fit
    assert "src/clipprobe/devices.py" in closure                 # imported by torch_solver
    assert "src/clipprobe/probe/__init__.py" in closure          # a package runs before its modules
    assert "src/clipprobe/encode/encoders.py" not in closure     # the probe never loads an encoder


def test_only_inputs_and_prepare_import_the_registry():
    with_registry = {name for name in stage.STAGES if "src/clipprobe/data/registry.py" in _closure(name)}
    assert with_registry == {"inputs", "prepare"}


def test_extraction_and_text_import_no_dataset_loader():
    loaders = {f"src/clipprobe/data/{m}.py" for m in ("registry", "registered", "readers", "downloads",
                                                      "imagefolder", "folders", "root", "sources", "prepare",
                                                      "wds", "hf_datasets", "indexed")}
    for name in ("extract", "text", "tune", "train", "evaluate", "fewshot", "zeroshot", "compare"):
        assert not _closure(name) & loaders, f"stage {name} imports {sorted(_closure(name) & loaders)}"


def test_editing_the_probe_or_the_solver_is_outside_extract_and_text():
    for name in ("extract", "text"):
        closure = _closure(name)
        assert not {f for f in closure if f.startswith("src/clipprobe/probe/")}, name
    assert "src/clipprobe/probe/torch_solver.py" not in _closure("evaluate")   # loading a probe fits nothing


def test_subpackage_init_files_are_empty():
    for init in PACKAGE.glob("*/__init__.py"):
        assert init.read_text() == "", f"{init} must stay empty: a re-export puts every sibling in every closure"


def test_no_import_cycle_between_clipprobe_modules():
    files = {f: f.relative_to(REPO / "src").with_suffix("") for f in PACKAGE.rglob("*.py")}
    names = {f: ".".join(p.parts[:-1] if p.name == "__init__" else p.parts) for f, p in files.items()}
    graph = {names[f]: {m for m in deps.imported_modules(f) if m != names[f]
                        and not names[f].startswith(m + ".")} for f in files}   # a module's own packages run first

    def visit(mod, path):
        assert mod not in path, f"import cycle: {' -> '.join(path + [mod])}"
        for dep in graph.get(mod, ()):
            visit(dep, path + [mod])

    for mod in graph:
        visit(mod, [])


def test_readme_tables_are_generated_from_the_registry_and_the_module_docstrings():
    readme = (REPO / "README.md").read_text()
    assert readme_tables.generate(readme) == readme, "README.md's tables are stale; run python tools/readme_tables.py"
    listed = re.findall(r"^\| `([\w/]+)` \| ", readme.split("<!-- module table -->")[1], flags=re.M)
    modules = {p.relative_to(PACKAGE).with_suffix("").as_posix() for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert set(listed) == modules


def test_every_module_says_what_it_holds_and_fits_in_one_sitting():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        assert readme_tables.summary(path), f"{path} has no docstring saying what it holds"
        n = len(path.read_text().splitlines())
        assert n <= 350, f"{path}: {n} lines; split it by concern"


def test_the_package_lists_the_pipeline_roles():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == {"data", "encode", "probe", "zeroshot", "report"}
