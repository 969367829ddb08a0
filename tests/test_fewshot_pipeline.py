"""End to end: the few-shot, zero-shot and compare stages in one reproduced DVC project."""

import json
import subprocess

import pytest
import yaml
from conftest import TINY, make_project, run

ALL = ("prepare", "extract", "tune", "train", "evaluate", "fewshot", "text", "zeroshot", "compare")


def _ran(out):
    return {s for s in ALL if f"Running stage '{s}'" in out}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    # 12 images per class: k = 16 cannot be supplied (16 shots + 4 validation), 1 and 2 can
    dest, env = make_project(tmp_path_factory.mktemp("fewshot") / "p", model={"name": TINY, "weights": "random"},
                             C=1.0, fewshot={"shots": [1, 2, 16], "seeds": 2})
    out = run(["dvc", "repro"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-qm", "baseline"], dest, env)
    return dest, env, out


def _json(dest, name):
    return json.loads((dest / "metrics" / f"{name}.json").read_text())


def test_repro_runs_fewshot_zeroshot_and_compare_and_skips_the_k_a_class_cannot_supply(project):
    dest, env, out = project
    assert _ran(out) == set(ALL)
    fs = _json(dest, "fewshot")
    assert list(fs["results"]) == ["1", "2"] and set(fs["results"]["2"]["per_seed"]) == {"0", "1"}
    assert fs["skipped"][0]["k"] == 16 and fs["skipped"][0]["have"] == 12
    assert "note: few-shot k=16 skipped" in out
    zs = _json(dest, "zeroshot")
    assert zs["n_test"] == 120 and 0 <= zs["top1"] <= 100 and zs["n_templates"] == 3
    cmp = _json(dest, "compare")
    assert cmp["metric"] == "top1" and cmp["zeroshot"] == zs["top1"] and cmp["full_data"] == _json(dest, "accuracy")["top1"]
    assert cmp["fewshot"] == {k: r["top1_mean"] for k, r in fs["results"].items()}
    assert (dest / "plots" / "fewshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = run(["dvc", "plots", "show", "-o", "rendered"], dest, env)
    assert "rendered" in html and "fewshot.png" in (dest / "rendered" / "index.html").read_text()


def test_fewshot_param_reruns_only_fewshot_and_its_comparison(project):
    dest, env, _ = project
    out = run(["dvc", "exp", "run", "-S", "fewshot.shots=[1,4]"], dest, env)
    assert _ran(out) == {"fewshot", "compare"}
    assert list(_json(dest, "fewshot")["results"]) == ["1", "4"]


def _set_params(dest, section, **values):
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if section is None:
        params.update(values)
    else:
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_changing_C_reruns_neither_fewshot_nor_zeroshot(project):
    dest, env, _ = project
    _set_params(dest, None, C=0.5)
    out = run(["dvc", "repro"], dest, env)
    assert _ran(out) == {"tune", "train", "evaluate", "compare"}
    assert _json(dest, "compare")["full_data"] == _json(dest, "accuracy")["top1"]


def test_bad_templates_file_stops_text_with_one_line_and_keeps_its_output(project):
    dest, env, _ = project
    before = (dest / "text" / "embeddings.npz").read_bytes()
    (dest / "mine.yaml").write_text(yaml.safe_dump({"templates": ["a {}."], "classnames": {"Trouser": "trousers"}}))
    _set_params(dest, "zeroshot", templates="mine.yaml")
    r = subprocess.run(["python", "stages/text.py"], cwd=dest, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "zeroshot.templates=mine.yaml" in r.stderr and "'T-shirt/top'" in r.stderr
    assert (dest / "text" / "embeddings.npz").read_bytes() == before


def test_a_model_without_a_text_tower_runs_every_stage_with_a_record_for_zero_shot(project):
    dest, env, _ = project
    _set_params(dest, "zeroshot", templates="src/clipprobe/prompts.json")
    _set_params(dest, "model", name="timm:test_vit", weights="random")
    out = run(["dvc", "repro"], dest, env)
    assert {"extract", "text", "zeroshot", "fewshot", "compare"} <= _ran(out)
    assert _json(dest, "accuracy")["layer"] == "pre_logits"          # extract.layer: auto, timm's default
    zs = _json(dest, "zeroshot")
    assert zs == {"dataset": "fashion-mnist", "model": "timm:test_vit", "weights": "random", "text_tower": False,
                  "reason": "timm models are image towers only"}
    assert not (dest / "text" / "embeddings.npz").exists()
    cmp = _json(dest, "compare")
    assert cmp["zeroshot"] is None and cmp["zeroshot_worth_shots"] is None
    assert cmp["zeroshot_skipped"] == "timm models are image towers only"
    assert list(cmp["fewshot"]) == list(_json(dest, "fewshot")["results"]) != []   # the curve is still there
    assert "zero-shot                    - (timm models are image towers only)" in out
    assert (dest / "plots" / "fewshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
