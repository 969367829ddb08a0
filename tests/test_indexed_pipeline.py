"""End to end, in one reproduced DVC project: a WebDataset shard set in CLIP_benchmark's layout and a
Hugging Face dataset (saved to disk, and as Parquet files) run through `dvc exp run` with the
features of the same images as an ImageFolder; DVC's override grammar and the quoted form."""

import json
import subprocess

import numpy as np
import pytest
import yaml
from conftest import REPO, TINY, make_image_folder, make_project, run
from indexed_sources import TEMPLATES, write_hf, write_wds

from clipprobe.encode import store

ALL = ("inputs", "prepare", "extract", "tune", "train", "evaluate", "fewshot", "text", "zeroshot", "compare")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project on an ImageFolder (3 classes, 18 train and 9 test images), its features kept as
    the reference, and the same images as shards and as a dataset saved both ways."""
    base = tmp_path_factory.mktemp("indexed")
    folder = make_image_folder(base / "folder")
    names = {"wds": write_wds(folder, base / "wds")}
    names["hf saved"], names["hf parquet"] = write_hf(folder, base / "hf")
    dest, env = make_project(base / "project", data={"name": str(folder), "limit_per_class": None},
                             model={"name": TINY, "weights": "random"}, extract={"shard_size": 10}, C=1.0,
                             fewshot={"shots": [1, 2], "seeds": 1})
    env = {**env, "HF_HUB_OFFLINE": "1"}
    run(["dvc", "exp", "run", "extract"], dest, env)
    reference = {s: store.read_features(dest / "features" / s) for s in ("train", "test")}
    return dest, env, names, reference


def _same_features(dest, reference):
    for split, (x, y, ids, _) in reference.items():
        x2, y2, ids2, _ = store.read_features(dest / "features" / split)
        np.testing.assert_array_equal(x2, x)
        assert (y2 == y).all() and (ids2 == ids).all()


def test_a_shard_set_runs_the_whole_pipeline_from_the_quoted_override_with_the_folders_features(project):
    dest, env, names, reference = project
    out = run(["dvc", "exp", "run", "-S", f'data.name="{names["wds"]}"'], dest, env)
    assert all(f"Running stage '{s}'" in out for s in ALL)
    assert yaml.safe_load((dest / "params.yaml").read_text())["data"]["name"] == names["wds"]
    _same_features(dest, reference)
    acc = json.loads((dest / "results" / "evaluate.json").read_text())
    assert acc["dataset"] == names["wds"] and acc["n_train"] == 18 and acc["n_test"] == 9
    text = json.loads((dest / "text" / "embeddings.json").read_text())   # zero-shot prompts from the shard set
    assert text["templates"] == [t.replace("{c}", "{}") for t in TEMPLATES]
    assert "zeroshot_classification_templates.txt" in text["source"] and text["classnames"][2] == ["owl"]
    assert set(json.loads((dest / "results" / "fewshot.json").read_text())["results"]) == {"1", "2"}
    assert (dest / "metrics" / "zeroshot.json").is_file() and (dest / "results" / "compare.json").is_file()


@pytest.mark.parametrize("kind", ["hf saved", "hf parquet"])
def test_a_hugging_face_dataset_extracts_the_folders_features_through_dvc(project, kind):
    dest, env, names, reference = project
    out = run(["dvc", "exp", "run", "extract", "-S", f"data.name={names[kind]}"], dest, env)
    assert "Running stage 'prepare'" in out and "Running stage 'extract'" in out
    _same_features(dest, reference)


def test_dvc_refuses_an_unquoted_brace_pattern_with_the_error_the_readme_explains(project):
    dest, env, names, _ = project
    r = subprocess.run(["dvc", "exp", "run", "-S", f"data.name={names['wds']}"], cwd=dest, env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "mismatched input '{' expecting <EOF>" in r.stderr
    readme = (REPO / "README.md").read_text()
    assert "mismatched input '{' expecting <EOF>" in readme
    assert """-S 'data.name="wds:/data/cifar10/{split}/{0..4}.tar"'""" in readme
