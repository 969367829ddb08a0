"""The inputs stage's records: the files prepare reads, and the model files by content."""

import hashlib
import os
import subprocess
import sys

import pytest
from conftest import REPO, TINY
from PIL import Image

from clipprobe.data import inputs
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams, ModelParams
from tools import deps


def _paths(listing: str) -> list[str]:
    return [line.split("\t")[0] for line in listing.splitlines()[1:]]


def test_listing_names_exactly_the_files_prepare_reads(image_folder, tmp_path):
    (image_folder / "train" / "cat" / "loop").symlink_to("..")
    (image_folder / "train" / "dog" / ".DS_Store").write_text("hidden")
    (image_folder / "README.txt").write_text("outside the splits")
    prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    read = [p for s in ("train", "test") for p in prepared_data.read_split(tmp_path / "p", s).column("path").to_pylist()]
    listing = inputs.data_listing(DataParams(name=str(image_folder)))
    assert _paths(listing) == read and len(read) == 27
    st = (image_folder / read[0]).stat()
    assert listing.splitlines()[1] == f"{read[0]}\t{st.st_size}\t{st.st_mtime_ns}"


@pytest.mark.parametrize("change", ["add", "remove", "rename", "rewrite", "touch"])
def test_listing_changes_with_any_file_change_and_only_then(image_folder, change):
    p = DataParams(name=str(image_folder))
    f = image_folder / "test" / "dog" / "001.png"
    old = f.stat().st_mtime_ns - 10**9     # a second ago, so that the file clock's tick cannot hide a write
    os.utime(f, ns=(old, old))
    before = inputs.data_listing(p)
    assert inputs.data_listing(p) == before
    if change == "add":
        Image.new("RGB", (8, 8)).save(image_folder / "test" / "dog" / "new.png")
    elif change == "remove":
        f.unlink()
    elif change == "rename":
        f.rename(f.with_name("renamed.png"))
    elif change == "rewrite":   # same name, same size, other bytes
        f.write_bytes(bytes(reversed(f.read_bytes())))
    else:
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1))
    assert inputs.data_listing(p) != before


def test_listing_of_a_named_dataset_is_constant():
    assert inputs.data_listing(DataParams(name="cifar10")) == "path\tsize\tmtime_ns\n"


def test_model_record_hashes_files_and_rehashes_only_a_changed_one(tmp_path, monkeypatch):
    ckpt, cache = tmp_path / "w.pt", tmp_path / "cache" / "sha256.json"
    ckpt.write_bytes(b"weights one")
    record = inputs.model_record(ModelParams(name=TINY, weights=str(ckpt)), cache)
    assert record["weights_sha256"] == hashlib.sha256(b"weights one").hexdigest()
    assert record["name_sha256"] == hashlib.sha256(open(TINY, "rb").read()).hexdigest()
    assert inputs.model_record(ModelParams(name="ViT-B/32", weights="random"), cache) == \
        {"name": "ViT-B/32", "weights": "random"}

    calls = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda f, algo: calls.append(f.name) or real(f, algo))
    assert inputs.model_record(ModelParams(name=TINY, weights=str(ckpt)), cache) == record
    assert calls == []                                  # unchanged (path, size, mtime): from the cache
    ckpt.write_bytes(b"weights two")                    # replaced in place
    changed = inputs.model_record(ModelParams(name=TINY, weights=str(ckpt)), cache)
    assert changed["weights_sha256"] == hashlib.sha256(b"weights two").hexdigest() and calls == [str(ckpt)]


def test_inputs_stage_imports_neither_torch_nor_image_decoders():
    modules = sorted(deps.closure(REPO / "stages" / "inputs.py"))
    code = f"import sys, {', '.join(modules)}; print(sorted({{'torch', 'PIL', 'numpy', 'pyarrow'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_dataset_name_stops_in_inputs_naming_the_param_and_the_choices(tmp_path):
    with pytest.raises(ClipprobeError, match=r"data.name must be one of .*cifar10.*, an existing ImageFolder "
                                             r"root with train/ and test/, wds:<shard pattern> or hf:<dataset>, "
                                             r"got 'imagenet-21k'"):
        inputs.data_listing(DataParams(name="imagenet-21k"))
    assert inputs.data_listing(DataParams(name="cifar10")) == "path\tsize\tmtime_ns\n"   # named: no listing
