import math

import pytest
import yaml
from conftest import REPO

from clipprobe import params
from clipprobe.errors import ClipprobeError


def test_repo_params_are_valid_and_default_to_cifar10_openai():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    p = params.parse(raw)
    assert (p.data.name, p.model.name, p.model.weights) == ("cifar10", "ViT-B/32", "openai")


def test_defaults_when_sections_missing():
    p = params.parse({})
    assert (p.data.name, p.model.name, p.model.weights, p.C) == ("cifar10", "ViT-B/32", "openai", "auto")


@pytest.mark.parametrize("raw, culprit", [
    ({"C": 0}, "C"),
    ({"C": -1.0}, "C"),
    ({"C": math.nan}, "C"),
    ({"C": "lots"}, "C"),
    ({"C": 1e308}, "C"),
    ({"C": 1e-300}, "C"),
    ({"extract": {"batch_size": 0}}, "extract.batch_size"),
    ({"extract": {"batch_size": "64"}}, "extract.batch_size"),
    ({"extract": {"device": "tpu"}}, "extract.device"),
    ({"extract": {"precision": "fp8"}}, "extract.precision"),
    ({"extract": {"engine": "spark"}}, "extract.engine"),
    ({"extract": {"ray": {"actors": 0}}}, "extract.ray.actors"),
    ({"extract": {"ray": {"gpus_per_actor": -1}}}, "extract.ray.gpus_per_actor"),
    ({"extract": {"ray": {"adress": "auto"}}}, "extract.ray.adress"),
    ({"extract": {"ray": "auto"}}, "extract.ray"),
    ({"extract": {"engine": "ray", "device": "cuda:1", "ray": {"gpus_per_actor": 1}}}, "extract.device"),
    ({"tune": {"val_fraction": 1.5}}, "tune.val_fraction"),
    ({"train": {"max_iter": 0}}, "train.max_iter"),
    ({"train": {"solver": "liblinear"}}, "train.solver"),
    ({"train": {"device": "gpu"}}, "train.device"),
    ({"data": {"limit_per_class": 0}}, "data.limit_per_class"),
    ({"data": {"nmae": "cifar10"}}, "data.nmae"),
    ({"data": {"image_column": ""}}, "data.image_column"),
    ({"data": {"label_column": 3}}, "data.label_column"),
    ({"data": {"splits": {"test": None}}}, "data.splits.test"),
    ({"data": {"splits": {"train": "a/b"}}}, "data.splits.train"),
    ({"data": {"splits": {"eval": "x"}}}, "data.splits.eval"),
    ({"optimizer": "adam"}, "optimizer"),
])
def test_bad_params_name_the_culprit(raw, culprit):
    with pytest.raises(ClipprobeError) as e:
        params.parse(raw)
    assert culprit in str(e.value) and "\n" not in str(e.value)


def test_C_accepts_numbers_and_numeric_strings():
    assert params.parse({"C": 0.316}).C == 0.316
    assert params.parse({"C": "1e-3"}).C == 1e-3


def test_missing_params_file(tmp_path):
    with pytest.raises(ClipprobeError, match="not found"):
        params.load(tmp_path / "params.yaml")


def test_ray_params_nest_under_extract():
    p = params.parse({"extract": {"engine": "ray", "ray": {"address": "auto", "actors": 4,
                                                           "gpus_per_actor": 0.5}}})
    assert (p.extract.ray.address, p.extract.ray.actors, p.extract.ray.gpus_per_actor) == ("auto", 4, 0.5)
    assert params.ray_device(p.extract) == "cuda"
    assert params.parse({"extract": {"ray": None}}).extract.ray == params.RayParams()


def test_split_names_nest_under_data_and_an_empty_val_means_none():
    p = params.parse({"data": {"name": "hf:/d", "splits": {"train": "fit", "val": "", "test": "eval"}}})
    assert p.data.splits == params.SplitNames(train="fit", val=None, test="eval")
    assert params.parse({}).data.splits == params.SplitNames(train="train", val="validation", test="test")


def test_C_may_span_the_bounds_that_change_a_fit():
    assert params.parse({"C": params.C_MIN}).C == 1e-12 and params.parse({"C": "1e12"}).C == 1e12
    with pytest.raises(ClipprobeError, match=r"C must be auto or a number from 1e-12 to 1e\+12"):
        params.parse({"C": 1e308})


def test_duplicate_keys_in_params_yaml_name_the_key_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  name: cifar10\n  limit_per_class: 5\n  name: mnist\nC: auto\n")
    with pytest.raises(ClipprobeError) as e:
        params.load(path)
    assert "key data.name appears twice (again on line 4)" in str(e.value) and "\n" not in str(e.value)
    path.write_text("C: 1\ndata:\n  name: cifar10\nC: 2\n")
    with pytest.raises(ClipprobeError, match="key C appears twice"):
        params.load(path)
    path.write_text("data:\n  name: cifar10\nmodel:\n  name: RN50\n")   # same key in two sections
    assert params.load(path).model.name == "RN50"


def test_data_root_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "raw"
    f.write_text("not a folder")
    for root in (f, f / "sub"):
        with pytest.raises(ClipprobeError) as e:
            params.parse({"data": {"root": str(root)}})
        assert "data.root" in str(e.value) and f"{f} is a file" in str(e.value)
    assert params.parse({"data": {"root": str(tmp_path / "new" / "raw")}}).data.root.endswith("raw")
