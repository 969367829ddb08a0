"""Finite or nothing: a broken model's NaN or inf features never become a number. Extraction
refuses them before a shard is written, and every stage that scores reads features, probes and
class embeddings through checks that stop on them (one line each)."""

import numpy as np
import pytest
import torch
from conftest import TINY

from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, store
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams
from clipprobe.probe import linear, saved


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_extraction_refuses_non_finite_features_naming_the_model_and_the_first_image(tmp_path, image_folder,
                                                                                     value):
    prepared = tmp_path / "prepared"
    prepare(DataParams(name=str(image_folder)), prepared)
    enc = encoders.load_encoder(TINY, "random")
    with torch.no_grad():
        enc.visual.proj[:, 3] = value        # one feature of every image
    cpu = torch.device("cpu")
    spec = extract.spec(enc, TINY, "random", batch_size=4, shard_size=7, device=cpu,
                        dtype=torch.float32)
    scratch = tmp_path / "scratch"
    with pytest.raises(ClipprobeError) as e:
        extract.extract_split(enc, prepared, "train", scratch, spec, "fp", device=cpu, dtype=torch.float32, workers=0)
    msg = str(e.value)
    assert "\n" not in msg and f"model.name={TINY}" in msg and "model.weights=random" in msg
    assert "7 of 7 train images" in msg and "the first train/cat/000.png" in msg
    assert not list(scratch.rglob("*.parquet")) and not (scratch / store.MANIFEST).exists()


def _split(tmp_path, emb, paths=None):
    store.write_shard(tmp_path, 0, range(len(emb)), [0, 1] * (len(emb) // 2), emb, paths)
    store.write_manifest(tmp_path, {"rows": len(emb), "embed_dim": emb.shape[1], "shards": [store.shard_name(0)]})
    return tmp_path


@pytest.mark.parametrize("paths, first", [(None, "image id 2"), (["a.png", "b.png", "c.png", "d.png"], "c.png")])
def test_features_holding_nan_or_inf_are_refused_wherever_they_are_read(tmp_path, paths, first):
    emb = np.ones((4, 3), np.float32)
    emb[2, 1], emb[3, 0] = np.nan, np.inf
    _split(tmp_path, emb, paths)
    with pytest.raises(ClipprobeError) as e:   # tune, train, evaluate, fewshot and zeroshot all read here
        store.read_features(tmp_path)
    assert str(e.value) == (f"{tmp_path}: 2 of 4 feature rows hold NaN or inf, the first {first}; the model "
                            "that made them is broken (check model.weights), then rerun `dvc repro -f extract`")


def test_finite_features_near_the_float32_limit_are_read_as_they_are(tmp_path):
    emb = np.full((4, 3), np.finfo(np.float32).max, np.float32)   # their float32 sum would overflow
    x, _, _, _ = store.read_features(_split(tmp_path, emb))
    assert np.array_equal(x, emb)


def test_a_probe_with_non_finite_coefficients_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    clf = linear.fit(rng.normal(size=(20, 3)), np.arange(20) % 2, 1.0)
    clf.coef_[0, 0] = np.nan
    saved.save(clf, tmp_path, {})
    with pytest.raises(ClipprobeError, match="probe.npz: the probe's coefficients hold NaN or inf"):
        saved.load(tmp_path)
