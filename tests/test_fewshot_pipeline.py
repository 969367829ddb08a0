"""End to end: the few-shot, zero-shot and compare stages in one reproduced DVC project."""

import csv
import io
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, TINY, make_hf_text_model, make_image_folder, make_project, run, tracked_params

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


def _json(dest, name, folder="metrics"):
    return json.loads((dest / folder / f"{name}.json").read_text())


def test_repro_runs_fewshot_zeroshot_and_compare_and_skips_the_k_a_class_cannot_supply(project):
    dest, env, out = project
    assert _ran(out) == set(ALL)
    fs = _json(dest, "fewshot", "results")
    assert list(fs["results"]) == ["1", "2"] and set(fs["results"]["2"]["per_seed"]) == {"0", "1"}
    assert fs["skipped"][0]["k"] == 16 and fs["skipped"][0]["have"] == 12
    assert "note: few-shot k=16 skipped" in out
    zs = _json(dest, "zeroshot", "results")
    assert zs["n_test"] == 120 and 0 <= zs["metrics"]["top1"]["value"] <= 100 and zs["n_templates"] == 3
    cmp = _json(dest, "compare", "results")
    assert cmp["metric"] == "top1" and cmp["zeroshot"] == zs["metrics"]["top1"]
    assert cmp["full_data"] == _json(dest, "evaluate", "results")["metrics"]["top1"]
    assert cmp["fewshot"] == {k: r["score"] for k, r in fs["results"].items()}
    assert cmp["full_data_label"] == "full-data (12 per class)"
    for png in ("fewshot", "tune", "confusion"):
        assert (dest / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = run(["dvc", "plots", "show", "-o", "rendered"], dest, env)
    assert "rendered" in html and "fewshot.png" in (dest / "rendered" / "index.html").read_text()


def test_a_normal_run_prints_no_warning_progress_as_it_goes_and_the_comparison_once(project):
    dest, env, out = project
    assert [line for line in out.splitlines() if "warn" in line.lower()] == []   # DVC's, Python's, libraries'
    done = [line.split(":")[0].strip() for line in out.splitlines() if "-shot seed" in line]
    assert done == ["1/4", "2/4", "3/4", "4/4"] and "ETA" in out           # few-shot: done of total, time left
    assert out.count("compare: zero-shot") == 1 and "full-data linear probe" not in out   # make demo prints that


def test_every_score_in_the_metrics_has_its_interval_and_test_set_size(project):
    dest, *_ = project
    for name in ("accuracy", "zeroshot"):
        m = _json(dest, name)
        assert list(m) == ["score", "score_low", "score_high", "n_test"] and m["n_test"] == 120
        assert m["score_low"] <= m["score"] <= m["score_high"]
    fs = _json(dest, "fewshot")
    assert fs["n_test"] == 120 and list(fs) == ["n_test", "1-shot", "2-shot"]
    assert all(list(k) == ["score", "score_low", "score_high", "score_std"] for k in (fs["1-shot"], fs["2-shot"]))
    record = _json(dest, "evaluate", "results")
    assert set(record["metrics"]) == {"top1", "top5", "mean_per_class_recall"}
    assert all(m["low"] <= m["value"] <= m["high"] for m in record["metrics"].values())
    assert {k: record[k] for k in ("dataset", "model", "weights", "layer")} == \
        {"dataset": "fashion-mnist", "model": TINY, "weights": "random", "layer": "projection"}
    predictions = __import__("pyarrow.parquet").parquet.read_table(dest / "results" / "evaluate.parquet")
    assert predictions.column_names == ["id", "label", "prediction"] and predictions.num_rows == 120


def test_dvc_metrics_diff_has_no_text_rows_and_exp_show_few_metric_columns(project):
    """After a run of every stage: `dvc metrics diff` lists numbers only, and `dvc exp show`'s metric
    columns for the demo's five few-shot k stay within 40 with Experiment and Created (DVC adds a
    column per param and per dependency file on top: see the README's one-row view)."""
    dest, env, _ = project
    diff = json.loads(_stdout(["dvc", "metrics", "diff", "--all", "--json", "HEAD~1"], dest, env))
    values = [v for changes in diff.values() for change in changes.values() for v in (change["old"], change["new"])]
    assert values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
    header = next(csv.reader([_stdout(["dvc", "exp", "show", "--csv"], dest, env).splitlines()[0]]))
    params = {"params.yaml:C", *_flat(yaml.safe_load((dest / "params.yaml").read_text()))}
    deps = {d for s in yaml.safe_load((dest / "dvc.yaml").read_text())["stages"].values() for d in s.get("deps", [])}
    metric = [c for c in header if c not in params | deps | {"Experiment", "rev", "typ", "Created", "parent"}]
    per_k = [c for c in metric if re.match(r"\d+-shot\.", c)]
    assert len(per_k) == 2 * 4                                   # k = 1, 2 of this project; 16 was skipped
    demo_shots = len(yaml.safe_load(tracked_params())["fewshot"]["shots"])
    assert 2 + len(metric) - len(per_k) + 4 * demo_shots <= 40, metric


def _stdout(cmd, cwd, env) -> str:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def _flat(d, prefix=""):
    out = set()
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def _report(dest, env, *extra):
    r = subprocess.run([sys.executable, "-m", "clipprobe", "report", "--md", "none", "--png", "none", "--csv",
                        "cells.csv", *extra], cwd=dest, env=env, capture_output=True, text=True)
    with open(dest / "cells.csv") as f:
        return r, [row for row in csv.DictReader(f) if row["dataset"] != "mean"]


@pytest.fixture(scope="module")
def targeted(project, tmp_path_factory):
    """Two experiments run with a target on another dataset (the README's grid workflow), from the
    committed baseline: `evaluate` (zero-shot and few-shot files stay the baseline's) and `tune`
    only (every scoring file stays the baseline's)."""
    dest, env, _ = project
    folder = str(make_image_folder(tmp_path_factory.mktemp("folder") / "colours", n_train=6, n_test=3, size=32))
    for name, target in (("folder-evaluate", "evaluate"), ("folder-tune", "tune")):
        run(["dvc", "exp", "run", "--temp", "-n", name, target, "-S", f"data.name={folder}"], dest, env)
    return folder, *_report(dest, env)


def test_a_targeted_experiment_shows_no_few_shot_or_zero_shot_numbers_it_inherited(targeted):
    folder, r, cells = targeted
    assert r.returncode == 0, r.stderr
    assert not [c for c in cells if c["dataset"] == folder and c["table"] != "linear probe"]
    mine = [c for c in cells if c["experiment"] == "folder-evaluate"]
    assert [(c["table"], c["dataset"]) for c in mine] == [("linear probe", folder)]
    assert "folder-evaluate, fewshot: results/fewshot.json is from data.name=fashion-mnist" in r.stdout
    assert "folder-evaluate, zeroshot: results/zeroshot.json is from data.name=fashion-mnist" in r.stdout


def test_a_tune_only_experiment_shows_no_linear_probe_or_zero_shot_number_of_the_baseline(targeted):
    folder, r, cells = targeted
    assert not [c for c in cells if c["experiment"] == "folder-tune"]
    assert [c["experiment"] for c in cells if c["dataset"] == folder] == ["folder-evaluate"]
    assert "folder-tune, evaluate: results/evaluate.json is from data.name=fashion-mnist" in r.stdout
    assert "Not shown: folder-tune (none of its results is its own" in r.stdout


def test_the_readmes_one_row_view_of_dvc_exp_show_is_one_row_per_experiment_and_its_scores(project, targeted):
    dest, env, _ = project
    line = next(ln for ln in (REPO / "README.md").read_text().splitlines() if ln.strip().startswith("dvc exp show --"))
    rows = list(csv.DictReader(io.StringIO(_stdout([*shlex.split(line.strip()), "--csv"], dest, env))))
    assert set(rows[0]) - {"rev", "typ", "parent"} == {
        "Experiment", "Created", "data.name", "model.name", "params.yaml:C", "metrics/accuracy.json:score",
        "metrics/zeroshot.json:score", "1-shot.score", "2-shot.score"}
    names = [r["Experiment"] for r in rows if r["Experiment"]]
    assert sorted(names) == ["folder-evaluate", "folder-tune"] and len(rows) == 2 + 2   # + workspace, baseline


def test_compare_and_report_baseline_pair_two_experiments_over_the_same_test_images(project, targeted):
    dest, env, _ = project
    for name, C in (("c-small", 0.001), ("c-large", 100)):
        run(["dvc", "exp", "run", "--temp", "-n", name, "evaluate", "-S", f"C={C}"], dest, env)
    r = subprocess.run([sys.executable, "-m", "clipprobe", "compare", "c-small", "c-large"], cwd=dest, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("| linear probe |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == ["tiny-clip.json · random · projection · C=0.001 (c-small)",
                          "tiny-clip.json · random · projection · C=100 (c-large)", "fashion-mnist (top-1, n=120)"]
    assert cells[8] == "exact McNemar"
    from scipy.stats import binomtest

    from clipprobe.results import read_predictions
    a, b = (read_predictions(_at(dest, env, n, "results/evaluate.parquet")) for n in ("c-small", "c-large"))
    right_a, right_b = a["prediction"] == a["label"], b["prediction"] == b["label"]
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    assert float(cells[4]) - float(cells[5]) == pytest.approx((right_a.mean() - right_b.mean()) * 100, abs=0.01)
    assert float(cells[7]) == pytest.approx(binomtest(only_a, only_a + only_b).pvalue, rel=1e-2)
    r, rows = _report(dest, env, "--baseline", "c-large", "--exp", "c-small,c-large")
    assert "difference from tiny-clip.json · random · projection · C=100 (c-large)" in r.stdout
    small = next(row for row in rows if row["experiment"] == "c-small")
    assert small["p_holm"] and float(small["diff_low"]) <= float(small["diff"]) <= float(small["diff_high"])
    from clipprobe.report import experiments   # what pairing checks beside ids and labels: prepare's output hash
    prepared = {e.name: e.prepared for e in experiments.collect(str(dest))[0]}
    assert prepared["c-small"] == prepared["c-large"] != prepared["folder-evaluate"] and \
        prepared["c-large"].endswith(".dir")
    r = subprocess.run([sys.executable, "-m", "clipprobe", "compare", "folder-evaluate", "c-large"], cwd=dest,
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no result on the same dataset and test set to compare (colours (n=9) against fashion-mnist (n=120))" \
        in r.stderr


def _at(dest, env, name, path) -> bytes:
    """The bytes of `path` at experiment `name`'s commit."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], dest, env).split()
    ref = next(ref for ref in refs if ref.endswith("/" + name))
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=dest, env=env, capture_output=True, check=True).stdout


def test_fewshot_param_reruns_only_fewshot_and_its_comparison(project):
    dest, env, _ = project
    out = run(["dvc", "exp", "run", "-S", "fewshot.shots=[1,4]"], dest, env)
    assert _ran(out) == {"fewshot", "compare"}
    assert list(_json(dest, "fewshot", "results")["results"]) == ["1", "4"]


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
    assert _json(dest, "compare", "results")["full_data"] == _json(dest, "evaluate", "results")["metrics"]["top1"]


def test_open_clip_cls_avgpatch_zero_shot_predicts_as_the_projection_features_do(project):
    """cls_avgpatch doubles the probe's features; zero-shot projects their class-token half, which is
    `encode_image`'s pooled feature: image by image the same predictions (fp32, so no rounding differs)."""
    dest, env, _ = project
    predictions = {}
    for layer in ("projection", "cls_avgpatch"):
        _set_params(dest, "extract", layer=layer, precision="fp32")
        out = run(["dvc", "repro", "zeroshot"], dest, env)
        assert "text" not in _ran(out)          # the class embeddings do not depend on the layer
        predictions[layer] = pq.read_table(dest / "results" / "zeroshot.parquet").column("prediction").to_pylist()
    width = json.loads((dest / "features" / "test" / "manifest.json").read_text())["embed_dim"]
    assert _json(dest, "zeroshot", "results")["layer"] == "cls_avgpatch" and width == 2 * 64
    assert predictions["cls_avgpatch"] == predictions["projection"]
    _set_params(dest, "extract", layer="auto", precision="auto")


def test_bad_templates_file_stops_text_with_one_line_and_keeps_its_output(project):
    dest, env, _ = project
    before = (dest / "text" / "embeddings.npz").read_bytes()
    (dest / "mine.yaml").write_text(yaml.safe_dump({"templates": ["a {}."], "classnames": {"Trouser": "trousers"}}))
    _set_params(dest, "zeroshot", templates="mine.yaml")
    r = subprocess.run(["python", "stages/text.py"], cwd=dest, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "zeroshot.templates=mine.yaml" in r.stderr and "'T-shirt/top'" in r.stderr
    assert (dest / "text" / "embeddings.npz").read_bytes() == before


def test_a_hugging_face_clip_gets_zero_shot_from_its_own_text_tower(project, tmp_path):
    dest, env, _ = project
    _set_params(dest, "zeroshot", templates="src/clipprobe/prompts.json")
    _set_params(dest, "model", name=f"hf:{make_hf_text_model(tmp_path / 'clip', 'clip')}", weights="pretrained")
    out = run(["dvc", "repro", "zeroshot"], dest, env)
    assert {"extract", "text", "zeroshot"} <= _ran(out)
    zs = _json(dest, "zeroshot", "results")
    assert zs["layer"] == "pre_logits" and zs["n_test"] == 120 and zs["n_templates"] == 3   # through the projection
    assert list(_json(dest, "zeroshot")) == ["score", "score_low", "score_high", "n_test"]
    with np.load(dest / "text" / "embeddings.npz") as arrays:
        assert arrays["class_emb"].shape == (10, 24) and arrays["image_proj"].shape == (32, 24)


def test_a_model_without_a_text_tower_runs_every_stage_with_a_record_for_zero_shot(project):
    dest, env, _ = project
    _set_params(dest, "zeroshot", templates="src/clipprobe/prompts.json")
    _set_params(dest, "model", name="timm:test_vit", weights="random")
    out = run(["dvc", "repro"], dest, env)
    assert {"extract", "text", "zeroshot", "fewshot", "compare"} <= _ran(out)
    assert _json(dest, "evaluate", "results")["layer"] == "pre_logits"   # extract.layer: auto, timm's default
    zs = _json(dest, "zeroshot", "results")
    assert {k: zs[k] for k in ("dataset", "model", "weights", "text_tower", "skipped")} == {
        "dataset": "fashion-mnist", "model": "timm:test_vit", "weights": "random", "text_tower": False,
        "skipped": "timm models are image towers only"}
    assert _json(dest, "zeroshot") == {} and "metric" not in zs          # numbers only: no score, none made up
    assert not (dest / "text" / "embeddings.npz").exists()
    cmp = _json(dest, "compare", "results")
    assert cmp["zeroshot"] is None and cmp["zeroshot_worth_shots"] is None
    assert cmp["zeroshot_skipped"] == "timm models are image towers only"
    assert list(cmp["fewshot"]) == list(_json(dest, "fewshot", "results")["results"]) != []   # the curve is still there
    assert re.search(r"zero-shot +- \(timm models are image towers only\)", out)
    assert (dest / "plots" / "fewshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
