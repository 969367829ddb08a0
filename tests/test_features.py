"""Extraction: the device-side preprocess, streaming shards, determinism and resume."""

import gzip
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FASHION_MNIST, REPO, TINY
from PIL import Image
from torchvision import transforms as T

from clipprobe import devices
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, preprocess, store, towers
from clipprobe.params import DataParams

CPU = torch.device("cpu")


def fashion_images(n):
    raw = gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz").read()[16:16 + n * 784]
    return [Image.fromarray(a).convert("RGB") for a in np.frombuffer(raw, np.uint8).reshape(n, 28, 28)]


def through(prep, images):
    batch = preprocess.collate_by_shape([(prep.host(im), i) for i, im in enumerate(images)])
    return prep.to_device(batch, CPU, torch.float32)


def test_tensor_preprocess_matches_the_pil_preprocess(fashion_mnist):
    """Bound: pixels within 2 levels of 255 (PIL rounds to uint8 between its two resize passes),
    ViT-B/32 features at cosine >= 0.999 (0.9999+ seen)."""
    enc = encoders.load_encoder("ViT-B/32", "random")
    prep = preprocess.for_model(enc.preprocess)
    assert isinstance(prep, preprocess.TensorPreprocess)
    rng = np.random.default_rng(0)
    images = fashion_images(12) + [Image.fromarray(rng.integers(0, 256, s, dtype=np.uint8))
                                   for s in ((32, 32, 3), (50, 100, 3), (300, 400, 3))]
    ref = torch.stack([enc.preprocess(im) for im in images])
    got = through(prep, images)
    assert ((got - ref).abs() * torch.tensor(prep.std).view(1, 3, 1, 1) * 255).max() <= 2.01
    assert torch.equal(got[-1], ref[-1])   # shrunk in the loader by the model's own PIL transforms
    with torch.inference_mode():
        cos = torch.nn.functional.cosine_similarity(enc.visual(got), enc.visual(ref))
    assert cos.min() >= 0.999


def test_small_images_travel_as_uint8_at_their_own_size():
    prep = preprocess.for_model(encoders.load_encoder("ViT-B/32", "random").preprocess)
    small, large = Image.new("RGB", (28, 28)), Image.new("RGB", (400, 300))
    assert prep.host(small).shape == (3, 28, 28) and prep.host(small).dtype == torch.uint8
    assert prep.host(large).shape == (3, 224, 224)


def test_batches_of_mixed_shapes_keep_row_order():
    prep = preprocess.for_model(encoders.load_encoder("ViT-B/32", "random").preprocess)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, s, dtype=np.uint8))
              for s in ((28, 28, 3), (300, 400, 3), (28, 28, 3), (100, 50, 3))]
    batch = preprocess.collate_by_shape([(prep.host(im), i) for i, im in enumerate(images)])
    assert [pos.tolist() for pos, _ in batch] == [[0, 2], [1], [3]]
    got = prep.to_device(batch, CPU, torch.float32)
    for k, im in enumerate(images):
        assert torch.equal(got[k], through(prep, [im])[0])


def test_unusual_preprocess_falls_back_to_pil():
    enc = encoders.load_encoder(TINY, "random")
    steps = list(enc.preprocess.transforms)
    odd = T.Compose([steps[0], T.Grayscale(3), *steps[1:]])
    assert isinstance(preprocess.for_model(odd), preprocess.PilPreprocess)
    assert isinstance(preprocess.for_model(enc.preprocess), preprocess.TensorPreprocess)


def test_iter_split_streams_exact_chunks(tmp_path):
    table = pa.table({"id": pa.array(range(23), pa.int64()), "label": pa.array([0] * 23, pa.int64())})
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=7)
    chunks = list(prepared_data.iter_split(tmp_path, "train", 5))
    assert [c.num_rows for c in chunks] == [5, 5, 5, 5, 3]
    assert pa.concat_tables(chunks).column("id").to_pylist() == list(range(23))
    assert prepared_data.split_rows(tmp_path, "train") == 23


def test_auto_loader_settings():
    assert extract.loader_settings("auto", "auto", CPU) == (100, 0)
    batch, workers = extract.loader_settings("auto", "auto", torch.device("cuda"))
    assert batch == 512 and 1 <= workers <= 8
    assert extract.loader_settings(32, 3, torch.device("cuda")) == (32, 3)


def _prepare(source, tmp_path):
    if source == "fashion-mnist":
        p = DataParams(name="fashion-mnist", root=str(tmp_path / "raw"), limit_per_class=12)
    else:
        from conftest import make_image_folder
        p = DataParams(name=str(make_image_folder(tmp_path / "folder", n_train=40)))
    out = tmp_path / "prepared"
    prepare(p, out)
    return out


def _extract(enc, prepared, scratch, dtype, workers=0):
    spec = extract.spec(enc, TINY, "random", batch_size=32, shard_size=50, device=CPU, dtype=dtype)
    return extract.extract_split(enc, prepared, "train", scratch, spec, "t", device=CPU, dtype=dtype,
                                  workers=workers)


@pytest.mark.parametrize("source", ["fashion-mnist", "image-folder"])
def test_extraction_is_byte_identical_across_runs_and_after_resume(source, tmp_path, fashion_mnist):
    """fashion-mnist: images enlarged on the device; image folder (40px > 32px): shrunk in the loader."""
    prepared = _prepare(source, tmp_path)
    dtype = devices.pick_precision("auto", CPU)
    enc = towers.place(encoders.load_encoder(TINY, "random"), CPU, dtype)
    a, b = tmp_path / "a", tmp_path / "b"
    manifest = _extract(enc, prepared, a, dtype)
    _extract(enc, prepared, b, dtype, workers=2)
    assert manifest["rows"] == 120 and len(manifest["shards"]) == 3
    for shard in manifest["shards"]:
        assert (a / shard).read_bytes() == (b / shard).read_bytes()

    c = tmp_path / "c"   # killed after the first shard, then resumed
    shutil.copytree(a, c)
    for f in (store.shard_name(1), store.shard_name(2), store.MANIFEST):
        (c / f).unlink()
    _extract(enc, prepared, c, dtype)
    for shard in manifest["shards"]:
        assert (a / shard).read_bytes() == (c / shard).read_bytes()
    x, y, ids, _ = store.read_features(a)
    assert x.shape == (120, enc.embed_dim) and np.isfinite(x).all() and len(np.unique(ids)) == 120


def test_bench_prints_both_rates_and_the_ratio(fashion_mnist):
    r = subprocess.run([sys.executable, "bench/extract.py", "--model", TINY, "--images", "30"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for line in ("canonical:", "clipprobe:", "model only:", "x clipprobe / canonical", "feature cosine"):
        assert line in r.stdout
