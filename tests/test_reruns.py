"""What `dvc repro` reruns in one reproduced project: exactly the stages a changed input or
library module feeds, and nothing where nothing changed.

The tests share one project (reproduced once) and run in order; each leaves it reproduced."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY, make_image_folder, make_project, run
from PIL import Image

from clipprobe import stage
from tools import deps

ALL = set(stage.STAGES) - {"compare"}   # see _ran


def _save_weights(path, seed):
    """A state dict of the tiny model, different for each seed."""
    import open_clip

    from clipprobe.encode import openclip
    openclip.resolve_name(TINY)
    torch.manual_seed(seed)
    torch.save(open_clip.create_model("tiny-clip").state_dict(), path)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("reruns")
    folder = make_image_folder(base / "folder")
    weights = base / "tiny.pt"
    _save_weights(weights, seed=1)
    config = base / "tiny-clip.json"
    config.write_bytes(open(TINY, "rb").read())
    dest, env = make_project(base / "project", data={"name": str(folder), "limit_per_class": None},
                             model={"name": str(config), "weights": str(weights)}, C=1.0,
                             train={"solver": "sklearn"}, fewshot={"shots": [1, 2], "seeds": 1})
    assert _ran(run(["dvc", "repro"], dest, env)) == ALL
    return dest, env, folder, weights, config


def _ran(out: str) -> set[str]:
    """The stages a repro ran, less `compare`: its inputs are metric values, which a changed
    checkpoint or image may leave byte-identical on this tiny data (then DVC rightly skips it)."""
    return set(re.findall(r"Running stage '([\w-]+)'", out)) - {"compare"}


def _status(dest, env) -> set[str]:
    """Stages `dvc status` would rerun, less `inputs`, which always runs."""
    return set(json.loads(run(["dvc", "status", "--json"], dest, env))) - {"inputs"}


def _manifest(dest, split="train"):
    return json.loads((dest / "features" / split / "manifest.json").read_text())


# What a release's edit to a module costs a user, by the stages `dvc status` then names (the
# README's "What an upgrade reruns"): the registry and the loaders are prepare's alone, the probe
# is never extraction's or the text tower's.
EDITS = {
    "data/registry": {"prepare"},
    "data/imagefolder": {"prepare"},
    "data/registered": {"prepare"},
    "data/wds": {"prepare"},
    "data/prepared": {"prepare", "extract", "text"},
    "encode/openclip": {"extract", "text"},
    "encode/timm_models": {"extract", "text"},     # every loader is in both closures: the seam imports each
    "encode/names": {"extract", "text"},           # and inputs, which runs every time anyway
    "encode/store": {"extract", "tune", "train", "evaluate", "fewshot", "zeroshot"},
    "probe/linear": {"tune", "train", "fewshot"},
    "probe/torch_solver": {"tune", "train", "fewshot"},
    "metrics": {"prepare", "tune", "evaluate", "fewshot", "zeroshot"},
}


@pytest.mark.parametrize("module", sorted(EDITS))
def test_editing_a_module_reruns_exactly_the_stages_whose_import_closure_holds_it(project, module):
    dest, env, *_ = project
    path = f"src/clipprobe/{module}.py"
    expected = {s for s in set(stage.STAGES) - {"inputs"}
                if path in deps.closure_files(REPO / "stages" / f"{s}.py")}
    assert expected == EDITS[module]
    original = (dest / path).read_bytes()
    try:
        (dest / path).write_bytes(original + b"\n# edited\n")
        assert _status(dest, env) == expected
    finally:
        (dest / path).write_bytes(original)


NEW_ENTRY = b"""
_ENTRIES += (Dataset("tiny-new", "MNIST", {"train": {"train": True}, "test": {"train": False}}, "a release's new entry"),)
REGISTRY = _frozen({d.name: d for d in _ENTRIES})
"""


def test_a_release_adding_a_dataset_reruns_only_inputs_and_prepare(project):
    dest, env, *_ = project
    path = dest / "src" / "clipprobe" / "data" / "registry.py"
    original = path.read_bytes()
    try:
        path.write_bytes(original + NEW_ENTRY)
        assert _ran(run(["dvc", "repro"], dest, env)) == {"inputs", "prepare"}   # prepare's output is the same
    finally:
        path.write_bytes(original)
    run(["dvc", "repro"], dest, env)   # the original registry: prepare comes back from DVC's run cache
    assert _status(dest, env) == set()


def test_untouched_inputs_rerun_nothing(project):
    dest, env, *_ = project
    assert _ran(run(["dvc", "repro"], dest, env)) == {"inputs"}
    assert json.loads(run(["dvc", "status", "--json"], dest, env)) == {"inputs": ["always changed"]}


def test_replacing_the_checkpoint_reruns_extraction_not_prepare(project):
    dest, env, _, weights, _ = project
    _save_weights(weights, seed=2)
    assert _ran(run(["dvc", "repro"], dest, env)) == ALL - {"prepare"}
    assert _manifest(dest)["weights_id"] == f"sha256:{hashlib.sha256(weights.read_bytes()).hexdigest()}"


def test_replacing_the_model_config_reruns_extraction_not_prepare(project):
    dest, env, _, _, config = project
    original = config.read_bytes()
    config.write_bytes(original.replace(b"\n", b"\n\n"))      # same model, another file
    try:
        run(["dvc", "repro", "inputs"], dest, env)
        assert _status(dest, env) == {"extract", "text"}     # and what follows, if the features change
    finally:
        config.write_bytes(original)
    run(["dvc", "repro", "inputs"], dest, env)
    assert _status(dest, env) == set()


def test_adding_an_image_reruns_prepare_extraction_and_everything_after(project):
    dest, env, folder, *_ = project
    rows = _manifest(dest)["rows"]
    make_image_folder(folder / "extra", classes=("dog",), n_train=1, n_test=0)
    os.replace(folder / "extra" / "train" / "dog" / "000.png", folder / "train" / "dog" / "new.png")
    # zero-shot reads the test features and the class embeddings, both unchanged by a train image
    assert _ran(run(["dvc", "repro"], dest, env)) == ALL - {"zeroshot"}
    assert _manifest(dest)["rows"] == rows + 1


def test_new_pixels_under_the_same_name_rerun_prepare_extraction_and_everything_after(project):
    dest, env, folder, *_ = project
    before = _manifest(dest, "test")["fingerprint"]
    Image.new("RGB", (40, 40), (10, 200, 30)).save(folder / "test" / "owl" / "001.png")
    assert _ran(run(["dvc", "repro"], dest, env)) == ALL - {"text"}   # the class names did not change
    assert _manifest(dest, "test")["fingerprint"] != before


def test_touching_an_image_reruns_prepare_only(project):
    dest, env, folder, *_ = project
    f = folder / "train" / "cat" / "002.png"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert _ran(run(["dvc", "repro"], dest, env)) == {"inputs", "prepare"}   # same table: extraction is kept


def test_train_without_tune_result_says_to_run_tune(project):
    dest, env, *_ = project
    tune = dest / "results" / "tune.json"
    saved = tune.read_bytes()
    tune.unlink()
    try:
        r = subprocess.run([sys.executable, "stages/train.py"], cwd=dest, env=env, capture_output=True, text=True)
    finally:
        tune.write_bytes(saved)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: results/tune.json is missing; it holds the C to train with; run " \
                               "`dvc repro tune` (or `dvc repro`) first"


def test_stage_script_run_from_another_directory_writes_into_its_project(project, tmp_path):
    dest, env, *_ = project
    metrics = dest / "metrics" / "accuracy.json"
    expected = metrics.read_bytes()
    metrics.unlink()
    subprocess.run([sys.executable, str(dest / "stages" / "evaluate.py")], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    assert metrics.read_bytes() == expected and not (tmp_path / "metrics").exists()


def test_evaluate_scores_the_classes_with_test_images_and_names_the_others(project):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clipprobe.encode import store
    dest, env, *_ = project
    saved = {p: p.read_bytes() for d in ("metrics", "results", "plots") for p in (dest / d).iterdir()}
    test = dest / "features" / "test"
    manifest = store.read_manifest(test)
    table = pa.concat_tables([pq.read_table(test / s) for s in manifest["shards"]])
    table = table.filter(pa.compute.not_equal(table["label"], 2))          # no owl in test
    for s in manifest["shards"]:
        (test / s).unlink()
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    store.write_shard(test, 0, table["id"], table["label"], emb, table["path"].to_pylist())
    store.write_manifest(test, {**manifest, "rows": table.num_rows, "shards": [store.shard_name(0)]})
    try:
        run([sys.executable, "stages/evaluate.py"], dest, env)
        acc = json.loads((dest / "results" / "evaluate.json").read_text())
        per_class = (dest / "metrics" / "per_class.csv").read_text().splitlines()
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
        run(["dvc", "checkout", "--force", "extract"], dest, env)
    assert acc["classes_absent_from_test"] == ["owl"] and acc["n_test"] == 6
    assert [row.split(",")[0] for row in per_class[1:]] == ["cat", "dog"]
    assert _status(dest, env) == set()
