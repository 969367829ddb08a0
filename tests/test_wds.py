"""WebDataset shards as a source (`data.name: wds:<pattern>`): `prepare` writes an index, not the images;
extraction reads the same images as from an ImageFolder, resumes per feature shard; each bad input is
one line naming the shard (and member)."""

import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY, make_image_folder
from indexed_sources import tar_bytes, write_wds

from clipprobe.data import inputs
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, store, towers
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams, SplitNames

CPU, FP32 = torch.device("cpu"), torch.float32


@pytest.fixture
def shards(tmp_path, monkeypatch):
    """An ImageFolder (3 classes, 18 train and 9 test PNGs) and the same images as a CLIP_benchmark
    shard set: train in 2 shards, test in 1 (the pattern's braces name 2)."""
    monkeypatch.chdir(tmp_path)   # the hash cache is the project's (.cache/clipprobe/)
    folder = make_image_folder(tmp_path / "folder")
    return folder, write_wds(folder, tmp_path / "wds"), tmp_path / "wds"


@pytest.fixture(scope="module")
def encoder():
    return towers.place(encoders.load_encoder(TINY, "random"), CPU, FP32)


def _extract(encoder, prepared, split, scratch, shard_size=5):
    spec = extract.spec(encoder, TINY, "random", batch_size=4, shard_size=shard_size, device=CPU,
                        dtype=FP32)
    fp = extract.split_fingerprint(spec, prepared, split)
    extract.extract_split(encoder, prepared, split, scratch, spec, fp, device=CPU, dtype=FP32, workers=0)
    return fp


def test_prepare_indexes_every_sample_in_shard_order_and_copies_no_image(shards, tmp_path):
    folder, name, wds_dir = shards
    info = prepare(DataParams(name=name), tmp_path / "p")
    table = prepared_data.read_split(tmp_path / "p", "train")
    assert table.column_names == ["id", "label", "shard", "member", "offset", "size", "sha256"]
    assert table.column("label").to_pylist() == [0] * 6 + [1] * 6 + [2] * 6
    assert table.column("shard").to_pylist() == ["train/0.tar"] * 9 + ["train/1.tar"] * 9
    assert table.column("member").to_pylist()[:2] == ["train00000.png", "train00001.png"]
    folder_files = sorted((folder / "train").rglob("*.png"))
    for row, f in zip(table.to_pylist(), folder_files):   # the offsets point at exactly the folder's bytes
        with open(wds_dir / row["shard"], "rb") as t:
            t.seek(row["offset"])
            assert t.read(row["size"]) == f.read_bytes()
        assert row["sha256"] == hashlib.sha256((wds_dir / row["shard"]).read_bytes()).hexdigest()
    assert info["classes"] == ["cat", "dog", "owl"] and info["splits"] == {"train": 18, "test": 9}
    assert info["root"] == str(wds_dir) and not info["named"] and info["skipped"] == []
    assert info["templates"] == ["a photo of a {}.", "a blurry photo of a {}."]   # CLIP_benchmark's {c} -> {}
    assert info["templates_source"] == str(wds_dir / "zeroshot_classification_templates.txt")


def test_features_from_shards_equal_the_image_folders_and_resume_per_feature_shard(shards, tmp_path, encoder):
    folder, name, _ = shards
    prepare(DataParams(name=str(folder)), tmp_path / "p_folder")
    prepare(DataParams(name=name), tmp_path / "p_wds")
    for split in ("train", "test"):   # 5-row feature shards: the second one spans both tar shards
        _extract(encoder, tmp_path / "p_folder", split, tmp_path / f"folder_{split}")
        _extract(encoder, tmp_path / "p_wds", split, tmp_path / f"wds_{split}")
        x_f, y_f, ids_f, _ = store.read_features(tmp_path / f"folder_{split}")
        x_w, y_w, ids_w, m = store.read_features(tmp_path / f"wds_{split}")
        np.testing.assert_array_equal(x_w, x_f)
        assert (y_w == y_f).all() and (ids_w == ids_f).all() and m["dataset"] == name
    paths = prepared_data.sample_paths(prepared_data.read_split(tmp_path / "p_wds", "train"))
    assert paths[9] == "train/1.tar/train00009.png"   # the feature store's path column: shard/member

    scratch = tmp_path / "resume"   # a killed run: shard 2 and the manifest missing
    shutil.copytree(tmp_path / "wds_train", scratch)
    (scratch / store.MANIFEST).unlink()
    (scratch / store.shard_name(2)).unlink()
    kept = {i: (scratch / store.shard_name(i)).stat().st_mtime_ns for i in (0, 1, 3)}
    _extract(encoder, tmp_path / "p_wds", "train", scratch)
    assert {i: (scratch / store.shard_name(i)).stat().st_mtime_ns for i in kept} == kept
    assert (scratch / store.shard_name(2)).read_bytes() == (tmp_path / "wds_train" / store.shard_name(2)).read_bytes()


def test_a_rewritten_shard_changes_the_listing_and_the_features_fingerprint_a_touched_one_only_the_listing(
        shards, tmp_path, encoder):
    folder, name, wds_dir = shards
    p = DataParams(name=name)
    listing = inputs.data_listing(p)
    assert [line.split("\t")[0] for line in listing.splitlines()[1:]] == [
        "train/0.tar", "train/1.tar", "test/0.tar", "classnames.txt", "zeroshot_classification_templates.txt"]
    prepare(p, tmp_path / "before")
    spec = extract.spec(encoder, TINY, "random", batch_size=4, shard_size=5, device=CPU, dtype=FP32)
    fp = extract.split_fingerprint(spec, tmp_path / "before", "train")

    shard = wds_dir / "train" / "1.tar"
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert inputs.data_listing(p) != listing               # prepare reruns ...
    prepare(p, tmp_path / "touched")
    assert extract.split_fingerprint(spec, tmp_path / "touched", "train") == fp   # ... and extraction does not

    data = bytearray(shard.read_bytes())   # new pixels, same names and sizes
    row = prepared_data.read_split(tmp_path / "before", "train").to_pylist()[12]
    data[row["offset"] + row["size"] - 20] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert inputs.data_listing(p).split("\n")[2].split("\t")[3] == hashlib.sha256(data).hexdigest()
    prepare(p, tmp_path / "rewritten")
    assert extract.split_fingerprint(spec, tmp_path / "rewritten", "train") != fp


def test_listing_hashes_each_shard_once_then_looks_it_up(shards, monkeypatch):
    _, name, _ = shards
    calls = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda f, algo: calls.append(f.name) or real(f, algo))
    first = inputs.data_listing(DataParams(name=name))
    assert len(calls) == 5
    assert inputs.data_listing(DataParams(name=name)) == first and len(calls) == 5
    prepare(DataParams(name=name), shards[2].parent / "p")   # prepare's hashes: the same cache
    assert len(calls) == 5


def _set(tmp_path, train: list[bytes], test: list[bytes] | None = None, classes=("a", "b")) -> str:
    """A shard set of raw tar bytes per shard (CLIP_benchmark's layout); returns its data.name."""
    root = tmp_path / "raw"
    for split, blobs in (("train", train), ("test", test or [_shard([("t0", 0), ("t1", 1)])])):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(blobs):
            (root / split / f"{i}.tar").write_bytes(blob)
    (root / "classnames.txt").write_text("\n".join(classes) + "\n")
    return f"wds:{root}/{{split}}/{{0..{max(len(train), len(test or [1])) - 1}}}.tar"


def _png(v: int) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (v, v, v)).save(buf, "PNG")
    return buf.getvalue()


def _shard(samples) -> bytes:
    return tar_bytes([m for key, y in samples for m in ((f"{key}.png", _png(y * 50)), (f"{key}.cls", str(y).encode()))])


GOOD = _shard([("a0", 0), ("a1", 1), ("a2", 0), ("a3", 1)])


def _fails(tmp_path, name, match, **kw):
    with pytest.raises(ClipprobeError, match=match) as e:
        prepare(DataParams(name=name, **kw), tmp_path / "p")
    assert "\n" not in str(e.value) and not (tmp_path / "p").exists()
    return str(e.value)


def test_a_pattern_matching_no_file_stops_inputs_and_prepare_naming_the_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = _set(tmp_path, [GOOD])
    typo = name.replace("{split}", "{split}s")
    for call in (lambda: inputs.data_listing(DataParams(name=typo)),
                 lambda: prepare(DataParams(name=typo), tmp_path / "p")):
        with pytest.raises(ClipprobeError, match=r"no file matches the pattern for split train \(.*/trains/0.tar\)"):
            call()
    with pytest.raises(ClipprobeError, match=r"needs \{split\} where the split's name goes"):
        inputs.data_listing(DataParams(name=f"wds:{tmp_path}/raw/train/0.tar"))
    with pytest.raises(ClipprobeError, match=r"no file matches the pattern for split test"):   # data.splits.test
        inputs.data_listing(DataParams(name=name, splits=SplitNames(test="eval")))


def test_a_missing_shard_between_present_ones_stops_prepare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = _set(tmp_path, [GOOD, GOOD, GOOD])
    os.remove(tmp_path / "raw" / "train" / "1.tar")
    _fails(tmp_path, name, r"shard .*train/1.tar of split train is missing, but later ones exist")
    os.remove(tmp_path / "raw" / "train" / "0.tar")      # the first one missing: not "no file matches"
    _fails(tmp_path, name, r"shard .*train/0.tar of split train is missing, but later ones exist \(.*train/2.tar\)")


def test_a_test_shard_identical_to_a_train_shard_is_refused(tmp_path, monkeypatch):
    """A shard copied into two split folders: the probe would be scored on images it was trained on."""
    monkeypatch.chdir(tmp_path)
    name = _set(tmp_path, [GOOD, _shard([("b0", 0), ("b1", 1)])], [GOOD])
    _fails(tmp_path, name, r"data.name=wds:.*: test file test/0.tar is byte-identical to train file train/0.tar: "
                           r"the same images would serve as train and test images; remove the copy")


def test_one_source_split_in_two_roles_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = _set(tmp_path, [GOOD])
    for splits, expected in ((SplitNames(val="test"), r"data.splits.test=test: data.splits.val names the same split; "
                              r"each split has one role \(val images would be tested on\): name another split, or "
                              r"leave data.splits.val empty"),
                             (SplitNames(test="train"), r"data.splits.test=train: data.splits.train names the same "
                              r"split; each split has one role \(train images would be tested on\): name another "
                              r"split$")):
        with pytest.raises(ClipprobeError, match=expected):
            inputs.data_listing(DataParams(name=name, splits=splits))


@pytest.mark.parametrize("damage, expected", [
    ("garbage", r"raw/train/1.tar: not a tar archive"),
    ("truncated", r"raw/train/1.tar: truncated in member b2.png \(\d+ of its \d+ bytes present\)"),
    ("gzip", r"raw/train/1.tar: gzip-compressed"),
    ("header", r"raw/train/1.tar: truncated or damaged after member b0.cls"),   # tarfile stops there quietly
])
def test_a_damaged_shard_stops_prepare_naming_it_or_with_skip_corrupt_keeps_its_intact_samples(
        tmp_path, monkeypatch, damage, expected):
    monkeypatch.chdir(tmp_path)
    second = _shard([("b0", 0), ("b1", 1), ("b2", 1)])
    cut = second.index(b"b2.png") + 512 + 30   # 30 bytes into b2.png's data
    header = second.index(b"b1.png")
    blob = {"garbage": b"this is not a tar file" * 40, "truncated": second[:cut], "gzip": gzip.compress(second),
            "header": second[:header] + b"\xff" * 160 + second[header + 160:]}[damage]
    name = _set(tmp_path, [GOOD, blob])
    message = _fails(tmp_path, name, expected)
    assert "data.skip_corrupt: true" in message
    info = prepare(DataParams(name=name, skip_corrupt=True), tmp_path / "p")
    assert len(info["skipped"]) == 1 and info["skipped"][0].startswith("train/1.tar: ")
    members = prepared_data.read_split(tmp_path / "p", "train").column("member").to_pylist()
    assert members == ["a0.png", "a1.png", "a2.png", "a3.png"] + (["b0.png", "b1.png"] if damage == "truncated" else [])


@pytest.mark.parametrize("members, expected", [
    ([("x.cls", b"0"), ("x.txt", b"caption")], r"raw/train/0.tar: sample x has no image \(members x.cls, x.txt; "),
    ([("x.png", b"png bytes")], r"raw/train/0.tar: sample x has no label \(x.cls, its class index\)"),
    ([("x.png", b"png bytes"), ("x.cls", b"cat")], r"sample x's label x.cls holds 'cat', not a class index"),
    ([("x.png", b"png bytes"), ("x.cls", b"2")],
     r"raw/train/0.tar: sample x has label 2, outside the 2 classes of classnames.txt \(0..1\)"),
])
def test_a_sample_without_image_or_label_or_with_a_label_outside_the_classes_stops_prepare(
        tmp_path, monkeypatch, members, expected):
    monkeypatch.chdir(tmp_path)
    _fails(tmp_path, _set(tmp_path, [tar_bytes(members)]), expected)


def test_no_classnames_file_beside_the_shards_stops_prepare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = _set(tmp_path, [GOOD])
    (tmp_path / "raw" / "classnames.txt").unlink()
    _fails(tmp_path, name, r"no classnames.txt beside the shards .* one class name per line, in label order")


def test_an_image_that_does_not_decode_stops_extraction_naming_shard_and_member(tmp_path, monkeypatch, encoder):
    monkeypatch.chdir(tmp_path)
    bad = tar_bytes([("a0.png", _png(0)), ("a0.cls", b"0"), ("a1.png", b"not a png"), ("a1.cls", b"1")])
    prepare(DataParams(name=_set(tmp_path, [bad])), tmp_path / "p")
    with pytest.raises(ClipprobeError, match=r"raw/train/0.tar member a1.png: cannot decode image .*replace or "
                                             r"remove that sample in the source") as e:
        _extract(encoder, tmp_path / "p", "train", tmp_path / "f")
    assert "\n" not in str(e.value) and not (tmp_path / "f" / store.MANIFEST).exists()
