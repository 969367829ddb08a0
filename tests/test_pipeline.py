"""End to end: the DVC pipeline in a temporary git+DVC copy of the repo."""

import json
import shutil

import pytest
import yaml
from conftest import TINY, assert_same_features, make_project, run


@pytest.fixture
def project(tmp_path, fashion_mnist):
    return make_project(tmp_path / "project", model={"name": TINY, "weights": "random"})


def test_repro_then_C_experiment_reruns_only_the_probe(project):
    dest, env = project
    out = run(["dvc", "repro"], dest, env)
    for stage in ("inputs", "prepare", "extract", "tune", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out
    acc = json.loads((dest / "results" / "evaluate.json").read_text())
    assert acc["n_train"] == 120 and acc["n_test"] == 120 and acc["dataset"] == "fashion-mnist"
    assert 10 < acc["metrics"]["top1"]["value"] <= 100
    assert set(acc["metrics"]) == {"top1", "top5", "mean_per_class_recall"}
    tune = json.loads((dest / "results" / "tune.json").read_text())
    assert acc["C"] == tune["C"] == json.loads((dest / "metrics" / "tune.json").read_text())["C"]
    assert tune["n_fits"] >= 9
    assert acc["params"] == tune["params"] == {"C": "auto", "tune.val_fraction": 0.2, "tune.seed": 0,
                                               "train.max_iter": 1000, "train.solver": "torch"}
    curve = (dest / "results" / "tune_curve.csv").read_text().splitlines()
    assert len(curve) == 1 + tune["n_fits"] and tune["n_iter"] >= tune["n_fits"] and tune["converged"]
    assert (dest / "probe" / "probe.npz").is_file()
    assert sorted(p.name for p in (dest / "features").iterdir()) == ["test", "train"]
    assert len(list((dest / "features" / "train" / "shards").glob("part-*.parquet"))) == 3   # 120 rows / 50

    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-qm", "baseline"], dest, env)
    out = run(["dvc", "exp", "run", "-S", "C=0.316"], dest, env)
    for stage in ("tune", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out
    for stage in ("prepare", "extract"):
        assert f"Running stage '{stage}'" not in out
    assert json.loads((dest / "results" / "evaluate.json").read_text())["C"] == 0.316

    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], dest, env))
    assert diff["metrics/tune.json"]["C"]["new"] == 0.316
    changed = diff["metrics/accuracy.json"]
    assert changed["score"]["old"] == acc["metrics"]["top1"]["value"]
    assert changed["score"]["new"] != changed["score"]["old"]
    assert json.loads(run(["dvc", "status", "--json"], dest, env)) == {"inputs": ["always changed"]}


def test_one_param_switches_extract_to_ray_with_the_same_features(project):
    dest, env = project
    run(["dvc", "repro", "extract"], dest, env)
    shutil.copytree(dest / "features", dest.parent / "local")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["extract"].update(engine="ray", ray={"address": None, "actors": 2, "gpus_per_actor": 0})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "extract"], dest, env)
    assert "Running stage 'extract'" in out and "Running stage 'prepare'" not in out
    assert "Started a local Ray instance" in out
    for split in ("train", "test"):
        assert_same_features(dest.parent / "local" / split, dest / "features" / split)
