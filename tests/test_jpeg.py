"""JPEG decoding on the device, run on CPU with torchvision's CPU decoder standing in for nvjpeg:
which files go to the device, the fallbacks, row order, and features equal to the PIL path's."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY
from PIL import Image
from torchvision.io import decode_jpeg

from clipprobe.data.prepared import SplitImages
from clipprobe.encode import encoders, extract, jpeg, preprocess, store, towers
from clipprobe.errors import ClipprobeError

CPU = torch.device("cpu")
# (name, size, mode, format): ImageNet-like and small JPEGs, grayscale and CMYK JPEGs, a PNG, a progressive JPEG
FILES = [("a.jpg", (500, 375), "RGB", "JPEG"), ("b.jpg", (32, 32), "RGB", "JPEG"), ("c.png", (60, 40), "RGB", "PNG"),
         ("d.jpg", (300, 200), "L", "JPEG"), ("e.jpg", (250, 250), "CMYK", "JPEG"),
         ("f.jpg", (375, 500), "RGB", "JPEG"), ("g.jpg", (64, 48), "RGB", "JPEG-progressive")]


def photo(size, seed):
    """A photo-like image: a smooth random colour field plus a little noise."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    noisy = np.asarray(field, np.int16) + rng.integers(-12, 13, (size[1], size[0], 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


@pytest.fixture
def split(tmp_path):
    """A prepared file-based split over FILES: (prepared dir, SplitImages with the TINY model's host step)."""
    root = tmp_path / "images"
    root.mkdir()
    for k, (name, size, mode, fmt) in enumerate(FILES):
        im = photo(size, k).convert(mode)
        im.save(root / name, format=fmt.split("-")[0], quality=90, progressive=fmt.endswith("progressive"))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    n = len(FILES)
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()),
                             "label": pa.array([k % 2 for k in range(n)], pa.int64()),
                             "path": pa.array([f[0] for f in FILES])}), prepared / "train.parquet")
    (prepared / "info.json").write_text(json.dumps({"dataset": "jpegs", "root": str(root), "classes": ["a", "b"],
                                                    "splits": {"train": n}}))
    prep = preprocess.for_model(encoders.load_encoder(TINY, "random").preprocess)
    return prepared, SplitImages(pq.read_table(prepared / "train.parquet"), root, prep.host), prep


def test_rgb_and_grayscale_jpegs_travel_as_bytes_and_the_rest_decoded_by_pil(split):
    _, images, _ = split
    kinds = ["bytes" if x.dim() == 1 else "decoded" for x, _ in jpeg.JpegFiles(images)]
    assert kinds == ["bytes", "bytes", "decoded", "bytes", "decoded", "bytes", "bytes"]   # PNG, CMYK: PIL


def _rows(step, items, collate):
    return step.to_device(collate(items), CPU, torch.float32)


def test_device_decoded_batch_matches_the_pil_path_row_by_row(split):
    """Mixed batch (PNG, CMYK decoded in the loader; JPEGs on the device) in row order: rows
    not resized differently are identical; JPEGs shrunk on the device instead of by PIL in the
    loader are within 3 of 255 levels per pixel."""
    _, images, prep = split
    ref = _rows(prep, [images[i] for i in range(len(images))], preprocess.collate_by_shape)
    got = _rows(jpeg.DeviceJpegPreprocess(prep, images), [jpeg.JpegFiles(images)[i] for i in range(len(images))],
                jpeg.collate)
    levels = ((got - ref).abs() * torch.tensor(prep.std).view(1, 3, 1, 1) * 255).flatten(1).amax(1)
    shrunk = [k for k, (_, (w, h), _, _) in enumerate(FILES) if min(w, h) > 32]
    assert levels.max() <= 3.01
    assert all(levels[k] == 0 for k in range(len(FILES)) if k not in shrunk)


def test_a_jpeg_the_device_rejects_falls_back_to_pil(split):
    _, images, prep = split
    rejected = jpeg.JpegFiles(images)[0][0]

    def picky(data, mode, device):  # as nvjpeg does with a file it cannot decode: the whole call fails
        if any(torch.equal(x, rejected) for x in data):
            raise RuntimeError("unsupported JPEG")
        return decode_jpeg(data, mode=mode, device=device)

    items = [jpeg.JpegFiles(images)[i] for i in range(len(images))]
    got = _rows(jpeg.DeviceJpegPreprocess(prep, images, decode=picky), items, jpeg.collate)
    pil = _rows(prep, [images[i] for i in range(len(images))], preprocess.collate_by_shape)
    device = _rows(jpeg.DeviceJpegPreprocess(prep, images), items, jpeg.collate)
    assert torch.equal(got[0], pil[0])          # the rejected file: PIL's pixels
    assert torch.equal(got[1:], device[1:])     # the others: still decoded on the device


def test_a_corrupt_jpeg_stops_with_one_line_naming_the_file(split):
    _, images, prep = split
    path = images.root / "a.jpg"
    data = bytearray(path.read_bytes())
    data[600:4000] = bytes(3400)   # the header survives (the loader routes it to the device); the scan does not
    path.write_bytes(bytes(data))
    items = [jpeg.JpegFiles(images)[i] for i in range(len(images))]
    assert items[0][0].dim() == 1
    with pytest.raises(ClipprobeError, match=f"^{path}: cannot decode image") as e:
        _rows(jpeg.DeviceJpegPreprocess(prep, images), items, jpeg.collate)
    assert "\n" not in str(e.value)


def test_device_decoding_is_for_file_based_splits_on_cuda_only(split):
    _, _, prep = split
    cuda, columns = torch.device("cuda"), ["id", "label", "path"]
    assert jpeg.applies(columns, prep, cuda) and not jpeg.applies(columns, prep, CPU)
    assert not jpeg.applies(["id", "label", "image"], prep, cuda)
    assert not jpeg.applies(columns, preprocess.PilPreprocess(None), cuda)
    assert jpeg.applies(columns, prep, CPU, wanted=True) and not jpeg.applies(columns, prep, cuda, wanted=False)


def test_vit_features_of_device_decoded_jpegs_match_the_pil_path(split, tmp_path):
    """extract_split end to end, ViT-B/32 (random, fp32): cosine >= 0.999 to the PIL path, row by row."""
    prepared, _, _ = split
    enc = towers.place(encoders.load_encoder("ViT-B/32", "random"), CPU, torch.float32)
    spec = extract.spec(enc, "ViT-B/32", "random", batch_size=4, shard_size=100, device=CPU,
                         dtype=torch.float32)
    out = {}
    for on in (True, False):
        extract.extract_split(enc, prepared, "train", tmp_path / str(on), spec, "t", device=CPU, dtype=torch.float32,
                               workers=0, jpeg_on_device=on)
        out[on] = store.read_features(tmp_path / str(on))[0]
    cos = np.sum(out[True] * out[False], 1) / np.linalg.norm(out[True], axis=1) / np.linalg.norm(out[False], axis=1)
    assert len(cos) == len(FILES) and cos.min() >= 0.999
