import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipprobe.encode import store
from clipprobe.errors import ClipprobeError


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((7, 5)).astype(np.float32)
    store.write_shard(tmp_path, 0, [0, 1, 2, 3], [1, 0, 1, 2], emb[:4], paths=list("abcd"))
    store.write_shard(tmp_path, 1, [4, 5, 6], [2, 2, 0], emb[4:], paths=list("efg"))
    store.write_manifest(tmp_path, {"rows": 7, "embed_dim": 5, "shards": [store.shard_name(0), store.shard_name(1)]})
    x, y, ids, manifest = store.read_features(tmp_path)
    assert x.dtype == np.float32 and np.array_equal(x, emb)
    assert y.tolist() == [1, 0, 1, 2, 2, 2, 0] and ids.tolist() == list(range(7))
    # plain Parquet: the schema a user sees with any reader
    t = pq.read_table(tmp_path / store.shard_name(0))
    assert t.schema.field("embedding").type == pa.list_(pa.float32(), 5)
    assert t.column_names == ["id", "label", "embedding", "path"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_resume_computes_exactly_the_missing_shards(tmp_path):
    emb = np.zeros((1, 2), np.float32)
    for i in (0, 1, 3):
        store.write_shard(tmp_path, i, [i], [0], emb)
    assert store.missing_shards(tmp_path, 5) == [2, 4]


def test_row_count_mismatch_is_caught(tmp_path):
    store.write_shard(tmp_path, 0, [0], [0], np.zeros((1, 2), np.float32))
    store.write_manifest(tmp_path, {"rows": 2, "embed_dim": 2, "shards": [store.shard_name(0)]})
    with pytest.raises(ClipprobeError, match="manifest says 2"):
        store.read_features(tmp_path)


def test_unwritable_directory_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")   # a folder that cannot be made, whoever runs the test
    with pytest.raises(ClipprobeError, match="cannot write"):
        store.write_shard(tmp_path / "file" / "dir", 0, [0], [0], np.zeros((1, 2), np.float32))


def test_multi_label_rows_round_trip_through_a_shard_as_pyarrow_hands_them_over(tmp_path):
    from clipprobe.labels import to_arrow
    rows = np.array([[1, 0, -1], [0, 1, 1]], np.int8)
    as_read = pa.table({"label": to_arrow(rows)}).column("label").to_numpy()   # what the engines pass on
    store.write_shard(tmp_path, 0, [7, 9], as_read, np.ones((2, 4), np.float32))
    store.write_manifest(tmp_path, {"rows": 2, "embed_dim": 4, "shards": [store.shard_name(0)]})
    x, y, ids, _ = store.read_features(tmp_path)
    assert y.dtype == np.int8 and y.tolist() == rows.tolist() and ids.tolist() == [7, 9]
