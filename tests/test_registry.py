"""Every registered dataset, against a tiny fake of its on-disk layout, with the network blocked:
prepare yields the paper's splits, the classes and the labels; with nothing on disk it stops with
one line saying what to download or where to put it."""

import importlib
import re
import socket

import fake_datasets
import numpy as np
import pytest
from conftest import REPO, tracked_params

from clipprobe.data import downloads, registry
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import _limit, prepare
from clipprobe.errors import ClipprobeError
from clipprobe.labels import from_arrow
from clipprobe.params import DataParams
from tools import readme_tables


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(downloads, "FASHION_MNIST_DIRS", ())   # nothing on disk means not Debian's either


def test_every_registry_entry_has_a_fake_layout_test():
    assert list(fake_datasets.BUILDERS) == list(registry.names())


@pytest.mark.parametrize("name", registry.names())
def test_prepare_reads_the_fake_layout_offline_into_the_papers_splits(name, tmp_path, no_network, monkeypatch):
    root, out = tmp_path / "raw", tmp_path / "prepared"
    expected = fake_datasets.BUILDERS[name](root)
    if name in fake_datasets.CHECKED:   # md5 checks the fake cannot pass
        module = importlib.import_module(f"torchvision.datasets.{fake_datasets.CHECKED[name]}")
        monkeypatch.setattr(module, "check_integrity", lambda *args, **kwargs: True)
    entry = registry.get(name)
    info = prepare(DataParams(name=name, root=str(root)), out)
    assert info["splits"] == expected["splits"]
    assert list(info["splits"]) == list(entry.paper_splits)
    assert info["classes"] == expected["classes"]
    assert (info["metric"], info["multi_label"], info["split"]) == (entry.metric, entry.multi_label, entry.split_text())
    ids = {}
    for split in info["splits"]:
        table = prepared_data.read_split(out, split)
        if split in expected["labels"]:
            assert from_arrow(table.column("label")).tolist() == expected["labels"][split], split
        ids[split] = table.column("id").to_numpy()
        assert np.all(np.diff(ids[split]) > 0), f"{split}: ids not in source order"
        if split in expected["ids"]:
            assert ids[split].tolist() == expected["ids"][split]
        image = prepared_data.SplitImages(table, info["root"], transform=lambda im: im).open(0)
        assert image.mode == "RGB"
    if entry.per_class:   # train and test drawn from one pool: never the same image
        assert not set(ids["train"]) & set(ids["test"])


@pytest.mark.parametrize("name", registry.names())
def test_offline_with_nothing_on_disk_stops_with_one_line_saying_what_to_do(name, tmp_path, no_network):
    root = tmp_path / "raw"
    with pytest.raises(ClipprobeError) as e:
        prepare(DataParams(name=name, root=str(root)), tmp_path / "prepared")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"data.name={name}: ") and str(root) in msg
    if registry.get(name).download is None:
        assert "could not download it" in msg and "connect to the internet" in msg
    else:
        assert "put " in msg
    assert not (tmp_path / "prepared").exists()


def test_carves_are_seeded_and_repeatable(tmp_path):
    root = tmp_path / "raw"
    fake_datasets.sun397(root)
    a = prepare(DataParams(name="sun397", root=str(root)), tmp_path / "a")
    b = prepare(DataParams(name="sun397", root=str(root)), tmp_path / "b")
    assert a == {**b}
    for split in a["splits"]:
        assert prepared_data.read_split(tmp_path / "a", split).equals(prepared_data.read_split(tmp_path / "b", split))


def test_multi_label_limit_keeps_an_image_while_one_of_its_present_classes_is_short():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, -1], [0, 0, 1]], np.int8)   # -1: difficult only
    assert _limit(labels, 1).tolist() == [0, 3]


def test_readme_dataset_table_is_the_registrys():
    readme = (REPO / "README.md").read_text()
    assert readme_tables.dataset_table() in readme
    listed = re.findall(r"^\| `([^`]+)` \| (?:torchvision|clipprobe) ", readme, flags=re.M)
    assert listed == list(registry.names())


def test_voc2007_runs_through_every_stage_to_an_11_point_map(tmp_path, monkeypatch, no_network):
    """prepare, extract, tune, train and evaluate (the stage scripts' main, in this process) on the
    fake VOC2007: multi-hot labels reach the probe, C is searched on the val split's mAP."""
    import json
    import runpy

    import yaml
    from conftest import TINY
    fake_datasets.voc2007(tmp_path / "raw")
    params = yaml.safe_load(tracked_params())
    params["data"].update(name="voc2007", root=str(tmp_path / "raw"))
    params["model"].update(name=TINY, weights="random")
    params["extract"].update(batch_size=4, device="cpu", workers=0)
    params["train"].update(solver="torch", device="cpu", max_iter=50)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    for name in ("prepare", "extract", "tune", "train", "evaluate"):
        runpy.run_path(str(REPO / "stages" / f"{name}.py"))["main"]()
    tune = json.loads((tmp_path / "results" / "tune.json").read_text())
    acc = json.loads((tmp_path / "results" / "evaluate.json").read_text())
    assert tune["metric"] == acc["metric"] == "map11" and tune["n_val"] == 1
    score = json.loads((tmp_path / "metrics" / "accuracy.json").read_text())
    assert score["score"] == acc["metrics"]["map11"]["value"] and 0 <= score["score"] <= 100 and acc["n_train"] == 4
    assert score["score_low"] <= score["score"] <= score["score_high"] and score["n_test"] == acc["n_test"]
    from clipprobe.results import read_predictions
    assert set(read_predictions(tmp_path / "results" / "evaluate.parquet")) == {"id", "label", "scores"}
    assert json.loads((tmp_path / "probe" / "probe.json").read_text())["multi_label"]
    per_class = (tmp_path / "metrics" / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 1 + 20 and per_class[1].startswith("aeroplane,")
