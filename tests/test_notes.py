"""Notes on thin evidence (small validation splits, unconverged fits, a small full-data probe), from
the note functions and from the tune, train and evaluate stages run in this process on features the
test writes."""

import json
import re
import runpy

import numpy as np
import pytest
import yaml
from conftest import REPO

from clipprobe import notes
from clipprobe.encode import store
from clipprobe.errors import ClipprobeError
from clipprobe.report import compare

CLASSES = ["cat", "dog", "owl"]


def test_a_validation_split_under_five_images_of_a_class_is_noted_naming_it():
    assert notes.small_validation(np.array([0] * 5 + [1] * 5 + [2] * 5), CLASSES) is None
    note = notes.small_validation(np.array([0] * 5 + [1] * 2 + [2] * 5), CLASSES)
    assert "2 of class 'dog' (fewer than 5 per class)" in note and "\n" not in note
    assert "0 of class 'owl'" in notes.small_validation(np.array([0] * 5 + [1] * 5), CLASSES)


def test_fits_stopped_at_max_iter_are_counted():
    assert notes.unconverged("C search", [10, 999], 1000) is None
    assert notes.unconverged("C search", [10, 1000, 1000], 1000).startswith(
        "C search: 2 of 3 fits stopped at train.max_iter=1000 before converging")
    assert notes.unconverged("the full-data probe", [5], 5).startswith("the full-data probe: the fit stopped")


def test_a_full_data_probe_smaller_than_the_largest_k_is_noted():
    assert notes.full_data_below_shots(16, 16) is None
    assert "as few as 12 images of a class, fewer than the 16 shots" in notes.full_data_below_shots(12, 16)


def _features(root, n_per_class=8, n_test=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_per_class), ("test", n_test)):
        y = np.repeat(np.arange(3), n)
        x = rng.normal(size=(len(y), dim)).astype(np.float32) + 2 * np.eye(3, dim)[y]
        d = root / "features" / split
        store.write_shard(d, 0, np.arange(len(y)), y, x)
        store.write_manifest(d, {"split": split, "dataset": "toy", "classes": CLASSES, "metric": "top1",
                                 "multi_label": False, "rows": len(y), "embed_dim": dim,
                                 "shards": [store.shard_name(0)],
                                 "fingerprint": f"fp-{split}", "model": "m", "arch": "a", "weights": "random",
                                 "weights_id": "random", "layer": "projection"})


@pytest.fixture
def project(tmp_path, monkeypatch):
    _features(tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(solver="torch", device="cpu", max_iter=2)       # every fit stops at 2 iterations
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_tune_train_and_evaluate_record_unconverged_fits_and_the_small_validation_split(project, capsys):
    for name in ("tune", "train", "evaluate"):
        runpy.run_path(str(REPO / "stages" / f"{name}.py"))["main"]()
    printed = capsys.readouterr().out
    tune = json.loads((project / "results" / "tune.json").read_text())
    probe = json.loads((project / "probe" / "probe.json").read_text())
    record = json.loads((project / "results" / "evaluate.json").read_text())
    assert tune["converged"] is False and tune["n_val"] == 5 and len(tune["notes"]) == 2
    assert re.match(r"the C search validated on 5 images, 1 of class '\w+' \(fewer than 5 per class\)",
                    tune["notes"][0])
    assert tune["notes"][1].startswith("C search: ") and "stopped at train.max_iter=2" in tune["notes"][1]
    assert probe["converged"] is False and probe["n_iter"] == 2
    assert record["notes"][:2] == tune["notes"] and "the full-data probe: the fit stopped" in record["notes"][2]
    assert record["converged"] is False and record["n_train_per_class_min"] == 8
    assert all(f"note: {n}" in printed for n in record["notes"])


def _record(features, metric="top1"):
    return {"dataset": "toy", "model": "m", "weights": "random", "features": features, "metric": metric, "n_test": 4,
            "metrics": {metric: {"value": 50.0, "low": 25.0, "high": 75.0}}, "n_train_per_class_min": 8}


def test_compare_refuses_records_of_other_test_features_and_notes_a_small_full_data_probe():
    few = {**_record("f"), "seeds": 2, "results": {"16": {"score": {"value": 60.0, "low": 50.0, "high": 70.0,
                                                                     "std": 1.0}}}}
    with pytest.raises(ClipprobeError, match="results/zeroshot.json scored other test features"):
        compare.compare(few, _record("other"), _record("f"))
    result = compare.compare(few, _record("f"), _record("f"), limit_per_class=8)
    assert result["full_data_label"] == "full-data (8 per class)"
    assert result["notes"] == [notes.full_data_below_shots(8, 16)]
    no_text = compare.compare(few, {"skipped": "the model has no text tower"}, _record("f"))
    assert no_text["zeroshot"] is None and no_text["zeroshot_worth_shots"] is None
