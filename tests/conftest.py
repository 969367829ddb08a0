import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "tiny-clip.json")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fashion_mnist():
    assert FASHION_MNIST.is_dir(), ("Debian's dataset-fashion-mnist is not installed; `make test` "
                                    "installs it when run as root")
    return FASHION_MNIST


def make_image_folder(root: Path, classes=("cat", "dog", "owl"), n_train=6, n_test=3, size=40, mode="RGB"):
    """An ImageFolder tree whose classes differ in colour, so a probe can learn them."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.zeros((size, size, 3), np.uint8)
                base[..., k % 3] = 160
                noise = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img = Image.fromarray(base + noise).convert(mode)
                img.save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "folder")


def assert_same_features(a: Path, b: Path):
    """Two extractions of a split hold the same manifest, shards, ids and row order, and
    embeddings equal within float tolerance."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma == mb
    for shard in ma["shards"]:
        ta, tb = pq.read_table(a / shard), pq.read_table(b / shard)
        assert ta.schema == tb.schema
        for col in set(ta.column_names) - {"embedding"}:
            assert ta.column(col).equals(tb.column(col)), col
        ea, eb = (np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in (ta, tb))
        np.testing.assert_allclose(ea, eb, rtol=1e-4, atol=1e-5)
