"""The Ray engine against the local one: same shards, manifest and row order; resume; errors.

A local Ray with 2 CPUs is started once for the module; each extraction starts its actors
anew (a model load each), which is most of these tests' time.
"""

import shutil
import sys

import pyarrow.parquet as pq
import pytest
import ray
import torch
from conftest import TINY, assert_same_features, make_image_folder
from indexed_sources import write_hf, write_wds

from clipprobe import params
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, ray_engine, store
from clipprobe.errors import ClipprobeError

CPU, FP32 = torch.device("cpu"), torch.float32


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def encoder():
    return encoders.load_encoder(TINY, "random")


def _params(**extract):
    return params.parse({"model": {"name": TINY, "weights": "random"},
                         "extract": {"engine": "ray", "batch_size": 32, "shard_size": 50,
                                     "ray": {"actors": 2}, **extract}})


def _spec(encoder, p):
    return extract.spec(encoder, p.model.name, p.model.weights, batch_size=p.extract.batch_size,
                         shard_size=p.extract.shard_size, device=CPU, dtype=FP32)


def _local(encoder, prepared, split, scratch, p):
    return extract.extract_split(encoder, prepared, split, scratch, _spec(encoder, p), "fp", device=CPU,
                                  dtype=FP32, workers=0)


def _ray(encoder, prepared, split, scratch, p):
    return ray_engine.extract_split(encoder, prepared, split, scratch, _spec(encoder, p), "fp", model=p.model,
                                    extract=p.extract, device=CPU, dtype=FP32)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory, local_ray, encoder):
    """Fashion-MNIST (PNG bytes), 120 train rows: 3 shards, batches of 32 that stop at shard ends;
    extracted by both engines."""
    tmp = tmp_path_factory.mktemp("fashion")
    prepared = tmp / "prepared"
    prepare(params.DataParams(name="fashion-mnist", root=str(tmp / "raw"), limit_per_class=12),
                     prepared)
    p = _params()
    _local(encoder, prepared, "train", tmp / "local", p)
    _ray(encoder, prepared, "train", tmp / "ray", p)
    return prepared, tmp, p


def test_ray_engine_writes_the_local_engines_features_from_image_bytes(fashion):
    prepared, tmp, _ = fashion
    assert sorted(str(f.relative_to(tmp / "ray")) for f in (tmp / "ray").rglob("*") if f.is_file()) == [
        "manifest.json", *(store.shard_name(i) for i in range(3))]
    assert_same_features(tmp / "local", tmp / "ray")
    ids = store.read_features(tmp / "ray")[2]
    assert (ids == prepared_data.read_split(prepared, "train").column("id").to_numpy()).all()  # prepared order


def test_ray_engine_computes_only_the_missing_shards(fashion, encoder, capsys):
    """A killed run's scratch, here made by the local engine: the Ray engine fills the hole."""
    prepared, tmp, p = fashion
    scratch = tmp / "resume"
    shutil.copytree(tmp / "local", scratch)
    (scratch / store.MANIFEST).unlink()
    (scratch / store.shard_name(1)).unlink()
    before = {i: (scratch / store.shard_name(i)).stat() for i in (0, 2)}
    capsys.readouterr()
    _ray(encoder, prepared, "train", scratch, p)
    assert "train: 50 images" in capsys.readouterr().out
    for i, st in before.items():
        now = (scratch / store.shard_name(i)).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), f"shard {i} was rewritten"
    assert_same_features(tmp / "local", scratch)


def test_ray_engine_reads_image_files_and_names_a_bad_one(tmp_path, local_ray, encoder):
    root = make_image_folder(tmp_path / "folder", n_train=8)
    prepared = tmp_path / "prepared"
    prepare(params.DataParams(name=str(root)), prepared)
    p = _params(batch_size=5, shard_size=10)
    _local(encoder, prepared, "train", tmp_path / "local", p)
    _ray(encoder, prepared, "train", tmp_path / "ray", p)
    assert_same_features(tmp_path / "local", tmp_path / "ray")
    assert pq.read_table(tmp_path / "ray" / store.shard_name(0)).column("path").to_pylist()[0] == "train/cat/000.png"

    (root / "train" / "dog" / "003.png").write_bytes(b"not a png")
    with pytest.raises(ClipprobeError) as e:
        _ray(encoder, prepared, "train", tmp_path / "broken", p)
    assert "dog/003.png: cannot decode image" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "broken" / store.MANIFEST).exists()


def test_ray_engine_reads_shard_members_and_dataset_rows_as_the_local_engine(tmp_path, local_ray, encoder,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)   # the hash cache is the project's
    folder = make_image_folder(tmp_path / "folder", n_train=8)
    names = {"wds": write_wds(folder, tmp_path / "wds"), "hf": write_hf(folder, tmp_path / "hf")[1]}
    p = _params(batch_size=5, shard_size=10)
    for kind, name in names.items():
        prepared = tmp_path / f"prepared-{kind}"
        prepare(params.DataParams(name=name), prepared)
        _local(encoder, prepared, "train", tmp_path / f"local-{kind}", p)
        _ray(encoder, prepared, "train", tmp_path / f"ray-{kind}", p)
        assert_same_features(tmp_path / f"local-{kind}", tmp_path / f"ray-{kind}")


@pytest.mark.parametrize("source", ["timm", "hf"])
def test_ray_engine_extracts_timm_and_hugging_face_models_as_the_local_engine_does(source, tmp_path, local_ray):
    if source == "timm":
        name = "timm:test_vit"
    else:   # a model directory: its image processor travels to the actors with the loader
        import transformers as t
        t.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8).save_pretrained(tmp_path / "vit")
        t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
        name = f"hf:{tmp_path / 'vit'}"
    root = make_image_folder(tmp_path / "folder", n_train=4)
    prepared = tmp_path / "prepared"
    prepare(params.DataParams(name=str(root)), prepared)
    p = params.parse({"model": {"name": name, "weights": "random"},
                      "extract": {"engine": "ray", "batch_size": 5, "shard_size": 10, "ray": {"actors": 1}}})
    enc = encoders.load_encoder(name, "random")
    _local(enc, prepared, "train", tmp_path / "local", p)
    _ray(enc, prepared, "train", tmp_path / "ray", p)
    assert_same_features(tmp_path / "local", tmp_path / "ray")
    assert store.read_manifest(tmp_path / "ray")["layer"] == "pre_logits"


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClipprobeError, match=r"pip install clipprobe\[ray\]") as e:
        ray_engine.require_ray()
    assert "\n" not in str(e.value)
