"""End to end: the DVC pipeline in a temporary git+DVC copy of the repo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, assert_same_features


def _run(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture
def project(tmp_path, fashion_mnist):
    """A git+DVC copy of this repo's tracked files, configured for a tiny offline run."""
    dest = tmp_path / "project"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file() and not f.startswith("tests/"):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"].update(name="fashion-mnist", limit_per_class=12)
    params["model"].update(name=TINY, weights="random")
    params["extract"].update(batch_size=32, shard_size=50)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    _run(["git", "init", "-q"], dest, env)
    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-qm", "init"], dest, env)
    return dest, env


def test_repro_then_C_experiment_reruns_only_the_probe(project):
    dest, env = project
    out = _run(["dvc", "repro"], dest, env)
    for stage in ("prepare", "extract", "tune", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out
    acc = json.loads((dest / "metrics" / "accuracy.json").read_text())
    assert acc["n_train"] == 120 and acc["n_test"] == 120 and acc["dataset"] == "fashion-mnist"
    assert 10 < acc["top1"] <= 100 and {"top5", "mean_per_class_recall", "C"} <= set(acc)
    tune = json.loads((dest / "metrics" / "tune.json").read_text())
    assert acc["C"] == tune["C"] and tune["n_fits"] >= 9
    assert (dest / "models" / "probe.npz").is_file()
    assert sorted(p.name for p in (dest / "features").iterdir()) == ["test", "train"]
    assert len(list((dest / "features" / "train").glob("part-*.parquet"))) == 3   # 120 rows / 50

    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-qm", "baseline"], dest, env)
    out = _run(["dvc", "exp", "run", "-S", "C=0.316"], dest, env)
    for stage in ("tune", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out
    for stage in ("prepare", "extract"):
        assert f"Running stage '{stage}'" not in out
    assert json.loads((dest / "metrics" / "accuracy.json").read_text())["C"] == 0.316

    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], dest, env))
    changed = diff["metrics/accuracy.json"]
    assert changed["C"]["new"] == 0.316
    assert changed["top1"]["old"] == acc["top1"] and changed["top1"]["new"] != acc["top1"]
    assert _run(["dvc", "status"], dest, env).strip().endswith("Data and pipelines are up to date.")


def test_one_param_switches_extract_to_ray_with_the_same_features(project):
    dest, env = project
    _run(["dvc", "repro", "extract"], dest, env)
    shutil.copytree(dest / "features", dest.parent / "local")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["extract"].update(engine="ray", ray={"address": None, "actors": 2, "gpus_per_actor": 0})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro", "extract"], dest, env)
    assert "Running stage 'extract'" in out and "Running stage 'prepare'" not in out
    assert "Started a local Ray instance" in out
    for split in ("train", "test"):
        assert_same_features(dest.parent / "local" / split, dest / "features" / split)
