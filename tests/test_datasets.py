import io
import json

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from clipprobe.data import downloads, imagefolder
from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams


def test_fashion_mnist_from_debian_idx_files(tmp_path, fashion_mnist):
    out = tmp_path / "prepared"
    info = prepare(DataParams(name="fashion-mnist", root=str(tmp_path / "raw"), limit_per_class=3), out)
    assert info["classes"][0] == "T-shirt/top" and len(info["classes"]) == 10
    assert info["splits"] == {"train": 30, "test": 30}
    train = prepared_data.read_split(out, "train")
    labels = train.column("label").to_numpy()
    assert np.bincount(labels).tolist() == [3] * 10
    # ids are indices in the official split order, first images of each class kept
    ids = train.column("id").to_numpy()
    assert np.all(np.diff(ids) > 0) and ids[0] == 0
    images = prepared_data.SplitImages(train, info["root"], transform=lambda im: im)
    img, _ = images[0]
    assert img.mode == "RGB" and img.size == (28, 28)   # grayscale became RGB


def test_image_folder_classes_order_and_rgb(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=("b", "a", "c"), mode="L")
    out = tmp_path / "prepared"
    info = prepare(DataParams(name=str(root)), out)
    assert info["classes"] == ["a", "b", "c"]
    train = prepared_data.read_split(out, "train")
    assert train.column("path").to_pylist()[0] == "train/a/000.png"
    assert train.column("label").to_pylist() == [0] * 6 + [1] * 6 + [2] * 6
    img = prepared_data.SplitImages(train, info["root"], transform=lambda im: im).open(0)
    assert img.mode == "RGB"
    assert json.loads((out / "info.json").read_text())["splits"] == {"train": 18, "test": 9}


def test_limit_per_class_takes_first_images(image_folder, tmp_path):
    info = prepare(DataParams(name=str(image_folder), limit_per_class=2), tmp_path / "p")
    train = prepared_data.read_split(tmp_path / "p", "train")
    assert info["splits"] == {"train": 6, "test": 6}
    assert [p.split("/")[-1] for p in train.column("path").to_pylist()] == ["000.png", "001.png"] * 3


def _corrupt(image_folder, n=1):
    bad = []
    for i in range(n):
        p = image_folder / "train" / "dog" / f"bad{i}.jpg"
        p.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        bad.append(p)
    good = image_folder / "train" / "cat" / "000.png"
    data = good.read_bytes()
    (image_folder / "train" / "cat" / "trunc.png").write_bytes(data[: len(data) // 2])
    (image_folder / "test" / "owl" / "notes.txt").write_text("not an image")
    return bad


def test_corrupt_images_stop_prepare_listing_them(image_folder, tmp_path):
    _corrupt(image_folder)
    out = tmp_path / "p"
    with pytest.raises(ClipprobeError) as e:
        prepare(DataParams(name=str(image_folder)), out)
    msg = str(e.value)
    assert "3 unreadable" in msg and "train/dog/bad0.jpg" in msg and "train/cat/trunc.png" in msg
    assert "test/owl/notes.txt" in msg and "skip_corrupt" in msg
    assert not out.exists()


def test_corrupt_listing_is_capped_at_20(image_folder, tmp_path):
    _corrupt(image_folder, n=25)
    with pytest.raises(ClipprobeError, match=r"and 7 more"):
        prepare(DataParams(name=str(image_folder)), tmp_path / "p")


def test_skip_corrupt_records_skipped(image_folder, tmp_path):
    _corrupt(image_folder)
    info = prepare(DataParams(name=str(image_folder), skip_corrupt=True), tmp_path / "p")
    assert sorted(info["skipped"]) == ["test/owl/notes.txt", "train/cat/trunc.png", "train/dog/bad0.jpg"]
    assert info["splits"] == {"train": 18, "test": 9}


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: (r / "test" / "zebra").mkdir(), "zebra"),
    (lambda r: [p.unlink() for p in (r / "train" / "owl").iterdir()], "empty class folder"),
    (lambda r: __import__("shutil").rmtree(r / "test"), "test is missing"),
])
def test_image_folder_structure_errors(image_folder, tmp_path, mutate, expected):
    mutate(image_folder)
    with pytest.raises(ClipprobeError, match=expected):
        prepare(DataParams(name=str(image_folder)), tmp_path / "p")


def test_fewer_than_two_classes(tmp_path):
    root = make_image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ClipprobeError, match="at least 2 classes"):
        prepare(DataParams(name=str(root)), tmp_path / "p")


def test_undecodable_file_at_extraction_names_it(image_folder, tmp_path):
    info = prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    (image_folder / "train" / "a.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(image_folder / "train" / "cat" / "000.png")
    (image_folder / "train" / "cat" / "000.png").write_bytes(b"garbage")
    images = prepared_data.SplitImages(prepared_data.read_split(tmp_path / "p", "train"), info["root"], lambda im: im)
    with pytest.raises(ClipprobeError, match="train/cat/000.png"):
        images[0]


def _tar(path, members):
    import tarfile
    with tarfile.open(path, "w") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                data = b"pixels"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("evil", [("../escape.txt", "file"), ("/tmp/abs-escape.txt", "file"),
                                  ("images/link", "symlink")])
def test_archives_cannot_write_outside_the_data_root(tmp_path, evil):
    from torchvision.datasets.utils import extract_archive

    archive = _tar(tmp_path / "data.tar", [("images/ok.png", "file"), evil])
    root = tmp_path / "root"
    root.mkdir()
    with downloads.torchvision_downloads(), pytest.raises(ClipprobeError, match="outside"):
        extract_archive(str(archive), str(root))    # the path torchvision's downloads take
    assert not (tmp_path / "escape.txt").exists() and not list(root.rglob("*"))


def test_safe_archive_extracts_normal_members(tmp_path):
    archive = _tar(tmp_path / "data.tar", [("images/ok.png", "file")])
    downloads.safe_extract_tar(archive, tmp_path / "root")
    assert (tmp_path / "root" / "images" / "ok.png").read_bytes() == b"pixels"


def test_symlink_loop_inside_a_class_folder_is_walked_once(image_folder, tmp_path):
    (image_folder / "train" / "cat" / "loop").symlink_to("..")        # train/cat/loop -> train/
    (image_folder / "test" / "dog" / "self").symlink_to(".")
    outside = make_image_folder(tmp_path / "more", classes=("cat",), n_train=1, n_test=0) / "train" / "cat"
    (image_folder / "train" / "cat" / "more").symlink_to(outside)     # a link elsewhere is followed
    info = prepare(DataParams(name=str(image_folder), skip_corrupt=True), tmp_path / "p")
    assert info["splits"] == {"train": 19, "test": 9} and info["skipped"] == []
    train = prepared_data.read_split(tmp_path / "p", "train")
    paths, labels = train.column("path").to_pylist(), train.column("label").to_pylist()
    assert [p for p, y in zip(paths, labels) if y == 0] == \
        ["train/cat/000.png", "train/cat/001.png", "train/cat/002.png", "train/cat/003.png",
         "train/cat/004.png", "train/cat/005.png", "train/cat/more/000.png"]
    assert all(p.startswith(f"train/{['cat', 'dog', 'owl'][y]}/") for p, y in zip(paths, labels))


@pytest.mark.parametrize("empty", ["no class folders", "empty class folders", "only unreadable files"])
def test_empty_test_split_stops_prepare_before_reading_any_image(image_folder, tmp_path, monkeypatch, empty):
    import shutil
    shutil.rmtree(image_folder / "test")
    (image_folder / "test").mkdir()
    if empty != "no class folders":
        for cls in ("cat", "dog"):
            (image_folder / "test" / cls).mkdir()
    if empty == "only unreadable files":
        (image_folder / "test" / "cat" / "x.png").write_bytes(b"not a png")
        with pytest.raises(ClipprobeError) as e:
            prepare(DataParams(name=str(image_folder), skip_corrupt=True), tmp_path / "p")
    else:
        monkeypatch.setattr(imagefolder, "read_images", lambda *a: pytest.fail("read images of an empty split"))
        with pytest.raises(ClipprobeError) as e:
            prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    assert f"{image_folder / 'test'}: no usable images" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "p").exists()


def test_class_without_test_images_is_prepared_and_named(image_folder, tmp_path):
    for f in (image_folder / "test" / "owl").iterdir():
        f.unlink()
    info = prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    assert info["splits"] == {"train": 18, "test": 6}
    assert prepared_data.classes_without_images(tmp_path / "p", "test", info["classes"]) == ["owl"]


def test_16_bit_grayscale_png_is_scaled_to_8_bits_in_the_loader(image_folder, tmp_path):
    values = np.array([[0, 257, 1000], [32768, 65000, 65535]], np.uint16)
    Image.fromarray(values).save(image_folder / "train" / "cat" / "000.png")
    assert Image.open(image_folder / "train" / "cat" / "000.png").mode == "I;16"
    info = prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    images = prepared_data.SplitImages(prepared_data.read_split(tmp_path / "p", "train"), info["root"], lambda im: im)
    rgb = np.asarray(images.open(0))
    assert images.open(0).mode == "RGB" and rgb.dtype == np.uint8
    expected = np.array([[0, 1, 4], [128, 253, 255]], np.uint8)     # round(v / 257): 65535 -> 255
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)
    as_int32 = Image.fromarray(values.astype(np.int32))             # mode I, as some Pillows open them
    np.testing.assert_array_equal(np.asarray(prepared_data.to_rgb(as_int32))[..., 0], expected)
    assert np.asarray(prepared_data.SplitImages(prepared_data.read_split(tmp_path / "p", "train"), info["root"],
                                           lambda im: im).open(1)).max() > 150   # 8-bit images unchanged


def test_prepared_table_records_each_files_content(image_folder, tmp_path):
    import hashlib
    prepare(DataParams(name=str(image_folder)), tmp_path / "a")
    table = prepared_data.read_split(tmp_path / "a", "train")
    first = image_folder / table.column("path")[0].as_py()
    assert table.column("sha256")[0].as_py() == hashlib.sha256(first.read_bytes()).hexdigest()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(first)                # new pixels, same name
    prepare(DataParams(name=str(image_folder)), tmp_path / "b")
    changed = prepared_data.read_split(tmp_path / "b", "train")
    assert changed.column("path").equals(table.column("path"))
    assert changed.column("sha256")[0] != table.column("sha256")[0]
    assert changed.column("sha256")[1:].equals(table.column("sha256")[1:])


def _png_claiming(width, height):
    """A valid small PNG whose header claims width x height: readers that check the header refuse
    it before decoding (no 600 MB of pixels made for the test)."""
    import struct
    import zlib
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)                   # IHDR's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # its CRC
    return bytes(data)


def test_an_image_over_the_pixel_limit_is_refused_naming_its_pixel_count_and_the_param(image_folder, tmp_path):
    big = image_folder / "train" / "dog" / "huge.png"
    big.write_bytes(_png_claiming(14000, 14000))    # the default limit: Pillow's
    with pytest.raises(ClipprobeError) as e:
        prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    assert str(e.value) == (f"{big}: 14000 x 14000 = 196,000,000 pixels, more than data.max_pixels=178,956,970 (a "
                            "guard against decompression bombs); raise data.max_pixels to at least 196,000,000 to "
                            "read it, or shrink the image")
    big.unlink()
    (image_folder / "train" / "dog" / "big.png").write_bytes(_png_claiming(60, 50))
    with pytest.raises(ClipprobeError) as e:
        prepare(DataParams(name=str(image_folder), max_pixels=1000), tmp_path / "p")
    assert str(e.value).endswith("train/cat/000.png: 40 x 40 = 1,600 pixels, more than data.max_pixels=1,000 (a guard "
                                 "against decompression bombs) (18 more over it, the largest 3,000 pixels); raise "
                                 "data.max_pixels to at least 3,000 to read them, or shrink the images")
    (image_folder / "train" / "dog" / "big.png").unlink()
    info = prepare(DataParams(name=str(image_folder), max_pixels=1600), tmp_path / "p")
    assert info["max_pixels"] == 1600 and info["splits"] == {"train": 18, "test": 9}
    table = prepared_data.read_split(tmp_path / "p", "train")   # extraction holds the prepared limit
    with pytest.raises(ClipprobeError, match=r"train/cat/000.png: 40 x 40 = 1,600 pixels, more than data.max_pixels=1,599"):
        prepared_data.SplitImages(table, info["root"], lambda im: im, max_pixels=1599).open(0)
    assert prepared_data.SplitImages(table, info["root"], lambda im: im, max_pixels=None).open(0).size == (40, 40)


def test_exif_orientation_is_not_applied_pixels_are_read_as_stored(image_folder, tmp_path):
    """The README's rule: as torchvision's loaders and OpenAI's preprocess read images, not as a
    photo viewer shows them."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255                                     # white left half, 40 wide and 20 high
    exif = Image.Exif()
    exif[0x0112] = 6                                         # Orientation: rotate 90 degrees to display
    Image.fromarray(stored).save(image_folder / "train" / "cat" / "turned.png", exif=exif)
    info = prepare(DataParams(name=str(image_folder)), tmp_path / "p")
    table = prepared_data.read_split(tmp_path / "p", "train")
    i = table.column("path").to_pylist().index("train/cat/turned.png")
    with Image.open(image_folder / "train" / "cat" / "turned.png") as im:
        assert im.getexif()[0x0112] == 6
    assert np.array_equal(np.asarray(prepared_data.SplitImages(table, info["root"], lambda im: im).open(i)), stored)
