"""Hugging Face datasets as a source (`data.name: hf:<dataset>`), saved with save_to_disk or as Parquet
files: `prepare` indexes their rows in place, extraction reads the same images as from an ImageFolder,
and a missing column or split, a label outside the classes, a dataset that cannot be had are one line."""

import shutil

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY, make_image_folder
from indexed_sources import hf_dataset_dict, write_hf

from clipprobe.data import inputs
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, store, towers
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams, SplitNames

CPU, FP32 = torch.device("cpu"), torch.float32


@pytest.fixture
def hf(tmp_path, monkeypatch):
    """An ImageFolder (3 classes, 18 train and 9 test PNGs) and the same images as a DatasetDict,
    saved to disk and as Parquet files; datasets' own cache redirected to look into."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = make_image_folder(tmp_path / "folder")
    saved, parquet = write_hf(folder, tmp_path / "hf")
    return folder, {"saved": saved, "parquet": parquet}


@pytest.mark.parametrize("kind", ["saved", "parquet"])
def test_prepare_indexes_rows_in_place_and_features_equal_the_image_folders(hf, tmp_path, kind):
    folder, names = hf
    info = prepare(DataParams(name=names[kind]), tmp_path / "p")
    table = prepared_data.read_split(tmp_path / "p", "train")
    assert table.column_names == ["id", "label", "file", "row", "column", "sha256"]
    assert table.column("row").to_pylist() == list(range(18)) and set(table.column("column").to_pylist()) == {"image"}
    assert set(table.column("file").to_pylist()) == {"train/data-00000-of-00001.arrow" if kind == "saved"
                                                     else "data/train-00000-of-00001.parquet"}
    assert info["classes"] == ["cat", "dog", "owl"] and info["splits"] == {"train": 18, "test": 9}
    assert not list((tmp_path / "hf-cache").rglob("*.arrow"))   # no copy into datasets' cache

    encoder = towers.place(encoders.load_encoder(TINY, "random"), CPU, FP32)
    prepare(DataParams(name=str(folder)), tmp_path / "p_folder")
    spec = extract.spec(encoder, TINY, "random", batch_size=4, shard_size=5, device=CPU, dtype=FP32)
    for prepared, out in ((tmp_path / "p", tmp_path / "hf_f"), (tmp_path / "p_folder", tmp_path / "folder_f")):
        extract.extract_split(encoder, prepared, "test", out, spec, "fp", device=CPU, dtype=FP32, workers=0)
    x_h, y_h, ids_h, _ = store.read_features(tmp_path / "hf_f")
    x_f, y_f, ids_f, _ = store.read_features(tmp_path / "folder_f")
    np.testing.assert_array_equal(x_h, x_f)
    assert (y_h == y_f).all() and (ids_h == ids_f).all()


def test_split_names_map_onto_the_papers_and_an_official_val_split_is_kept(hf, tmp_path):
    folder, _ = hf
    dd = hf_dataset_dict(folder, split_names=("fit", "eval"))
    dd["dev"] = dd["fit"].select(range(0, 18, 3)).flatten_indices()
    dd.save_to_disk(str(tmp_path / "renamed"))
    p = DataParams(name=f"hf:{tmp_path / 'renamed'}", splits=SplitNames(train="fit", val="dev", test="eval"))
    info = prepare(p, tmp_path / "p")
    assert info["splits"] == {"train": 18, "val": 6, "test": 9} and "val: split dev" in info["split"]


def test_string_labels_give_sorted_class_names(hf, tmp_path):
    folder, _ = hf
    dd = hf_dataset_dict(folder)
    dd = datasets.DatasetDict({s: d.cast_column("label", datasets.Value("string")) for s, d in dd.items()})
    names = ["zebra", "ant", "moth"]
    dd = datasets.DatasetDict({s: d.map(lambda r: {"label": names[int(r["label"])]}) for s, d in dd.items()})
    dd.save_to_disk(str(tmp_path / "strings"))
    info = prepare(DataParams(name=f"hf:{tmp_path / 'strings'}"), tmp_path / "p")
    assert info["classes"] == ["ant", "moth", "zebra"]
    assert prepared_data.read_split(tmp_path / "p", "train").column("label").to_pylist()[:7] == [2] * 6 + [0]


def _fails(tmp_path, p, match):
    with pytest.raises(ClipprobeError, match=match) as e:
        prepare(p, tmp_path / "p")
    assert "\n" not in str(e.value) and not (tmp_path / "p").exists()


@pytest.mark.parametrize("kind", ["saved", "parquet"])
def test_a_column_or_split_that_does_not_exist_stops_prepare_listing_what_there_is(hf, tmp_path, kind):
    _, names = hf
    _fails(tmp_path, DataParams(name=names[kind], image_column="img"),
           r"data.image_column=img: hf:.* split train has no such column; its columns: image, label, caption")
    _fails(tmp_path, DataParams(name=names[kind], label_column="fine_label"),
           r"data.label_column=fine_label: .* its columns: image, label, caption")
    _fails(tmp_path, DataParams(name=names[kind], image_column="caption"),
           r"data.image_column=caption: .* holds Value\('string'\) there, not images")
    _fails(tmp_path, DataParams(name=names[kind], splits=SplitNames(test="valid")),
           r"data.splits.test=valid: hf:.* has no split valid; its splits: train, test")


def test_a_splits_class_label_in_another_order_is_read_by_name(hf, tmp_path):
    """Each split's integer labels mean what its own ClassLabel says: a test split listing the classes
    in another order gets train's indices for the same names."""
    folder, _ = hf
    dd = hf_dataset_dict(folder)
    order = ["owl", "cat", "dog"]
    test = dd["test"].cast_column("label", datasets.Value("int64"))
    test = test.map(lambda r: {"label": order.index(["cat", "dog", "owl"][r["label"]])})
    dd["test"] = test.cast_column("label", datasets.ClassLabel(names=order))
    dd.save_to_disk(str(tmp_path / "reordered"))
    prepare(DataParams(name=f"hf:{tmp_path / 'reordered'}"), tmp_path / "p_hf")
    prepare(DataParams(name=str(folder)), tmp_path / "p_folder")
    labels = [prepared_data.read_split(tmp_path / d, "test").column("label").to_pylist() for d in ("p_hf", "p_folder")]
    assert labels[0] == labels[1]
    dd["test"] = dd["test"].cast_column("label", datasets.ClassLabel(names=["owl", "cat", "hen"]))
    dd.save_to_disk(str(tmp_path / "other"))
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'other'}"),
           r"data.label_column=label: split test's class names differ from the train split's \(dog, hen in only one")


def test_labels_that_are_not_class_indices_or_not_labels_are_one_line(hf, tmp_path):
    folder, _ = hf
    dd = hf_dataset_dict(folder)
    ints = datasets.DatasetDict({s: d.cast_column("label", datasets.Value("int64")).map(
        lambda r: {"label": r["label"] + 1}) for s, d in dd.items()})
    ints.save_to_disk(str(tmp_path / "one-based"))
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'one-based'}"),
           r"data.label_column=label: its integer labels run 1..3, and integer labels are class indices from 0")
    dd = datasets.DatasetDict({s: d.map(lambda r, i: {"caption": f"photo {i} of a {r['label']}"}, with_indices=True)
                               for s, d in dd.items()})
    dd.save_to_disk(str(tmp_path / "captions"))       # a caption per image: free text
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'captions'}", label_column="caption"),
           r"data.label_column=caption: its 18 train values are all different \(free text, not class labels\?\)")


def test_parquet_images_stored_as_file_paths_are_refused(hf, tmp_path):
    """Such files are outside what clipprobe hashes: an edit to one would leave stale results."""
    folder, _ = hf
    (tmp_path / "paths" / "data").mkdir(parents=True)
    for split, d in hf_dataset_dict(folder).items():
        paths = [str(p) for p in sorted((folder / split).rglob("*.png"))]
        table = d.data.table.set_column(0, "image", pa.array([{"bytes": None, "path": p} for p in paths],
                                                             d.data.table.schema.field("image").type))
        pq.write_table(table.replace_schema_metadata(d.data.table.schema.metadata),
                       tmp_path / "paths" / "data" / f"{split}-00000-of-00001.parquet")
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'paths'}"),
           r"data/train-00000-of-00001.parquet: 18 image\(s\) of column image are file paths, not image bytes")


def test_parquet_files_whose_names_name_no_split_say_which_splits_there_are(hf, tmp_path):
    _, names = hf
    (tmp_path / "flat").mkdir()
    shutil.copy(next((tmp_path / "hf" / "parquet" / "data").glob("train-*")), tmp_path / "flat" / "all.parquet")
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'flat'}"), r"data.splits.test=test: hf:.* has no split test; "
                                                                 r"its splits: train$")


def test_a_label_outside_the_class_list_stops_prepare_naming_file_and_row(hf, tmp_path):
    folder, _ = hf
    dd = hf_dataset_dict(folder)
    dd["test"] = dd["test"].map(lambda r, i: {"label": -1 if i == 4 else r["label"]}, with_indices=True)
    dd.save_to_disk(str(tmp_path / "unlabelled"))
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'unlabelled'}"),
           r"test/data-00000-of-00001.arrow: row 4 of split test has label -1, outside the 3 classes of label")


def test_a_single_saved_split_and_a_folder_of_images_are_named_for_what_they_are(hf, tmp_path):
    folder, _ = hf
    hf_dataset_dict(folder)["train"].save_to_disk(str(tmp_path / "one"))
    _fails(tmp_path, DataParams(name=f"hf:{tmp_path / 'one'}"), r"a single saved split; save a DatasetDict")
    _fails(tmp_path, DataParams(name=f"hf:{folder}"), r"holds imagefolder files, not a saved dataset or Parquet "
                                                       r"files; for a folder of images per class use data.name: <folder>")


def test_a_missing_path_stops_inputs_and_a_repo_id_offline_fails_fast_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClipprobeError, match=r"data.name=hf:/no/such/dataset: /no/such/dataset does not exist, and "
                                             r"it is not a Hugging Face repo id"):
        inputs.data_listing(DataParams(name="hf:/no/such/dataset"))
    assert inputs.data_listing(DataParams(name="hf:someone/cifar10")) == "path\tsize\tmtime_ns\tsha256\n"
    import huggingface_hub.constants

    from clipprobe.data import hf_datasets
    for config in (datasets.config, huggingface_hub.constants):   # no offline switch set: the Hub is probed
        monkeypatch.setattr(config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_datasets, "_hub_reachable", lambda timeout=3.0: False)
    _fails(tmp_path, DataParams(name="hf:someone/cifar10"), r"data.name=hf:someone/cifar10: datasets cannot open it "
                                                            r"\(ConnectionError: .*OfflineModeIsEnabled.*\); check the "
                                                            r"path or repo id")


def test_without_the_datasets_library_prepare_says_how_to_install_it(hf, tmp_path, monkeypatch):
    import sys
    _, names = hf
    monkeypatch.setitem(sys.modules, "datasets", None)
    _fails(tmp_path, DataParams(name=names["saved"]), r"pip install 'clipprobe\[hf\]'")
