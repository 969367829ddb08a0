"""Tiny fakes of each registered dataset's on-disk layout, in the exact files and folders its
torchvision class (or clipprobe reader) reads, the way torchvision's own test suite fakes them.

`BUILDERS[name](root)` writes the fake under `root` (data.root) and returns what `prepare` must
make of it: split sizes, class names (or their first few), and per split the labels (and ids)
in prepared order. `CHECKED` names the torchvision modules whose md5 checks gate loading: the
fakes cannot match the real checksums, so the tests pass those checks (as torchvision's do).
"""

from __future__ import annotations

import csv
import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CHECKED = {"cifar10": "cifar", "cifar100": "cifar", "stl10": "stl10", "flowers102": "flowers102"}


def _image(path: Path, seed: int = 0, size=(6, 5), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _mat(path: Path, **arrays) -> None:
    from scipy.io import savemat
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, arrays)


def _expect(splits: dict, classes, labels: dict, ids: dict | None = None) -> dict:
    return {"splits": splits, "classes": classes, "labels": labels, "ids": ids or {}}


def food101(root):
    base = root / "food-101"
    meta = {"train": {"baklava": ["baklava/11", "baklava/12"], "apple_pie": ["apple_pie/21", "apple_pie/22"]},
            "test": {"apple_pie": ["apple_pie/23"], "baklava": ["baklava/13"]}}
    for split, m in meta.items():
        _write(base / "meta" / f"{split}.json", json.dumps(m))
        for i, rel in enumerate(sum(m.values(), [])):
            _image(base / "images" / f"{rel}.jpg", i)
    # torchvision keeps the JSON's class order per image and sorts the class names
    return _expect({"train": 4, "test": 2}, ["apple_pie", "baklava"], {"train": [1, 1, 0, 0], "test": [0, 1]})


def _cifar(root, folder, files, meta_file, meta_key, label_key, n_classes):
    base = root / folder
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for name, split in files:
        y = [i % n_classes for i in range(3)]
        with open(base / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (3, 3072), dtype=np.uint8), label_key: y}, f)
        labels.setdefault(split, []).extend(y)
    names = [f"class{i}" for i in range(n_classes)]
    with open(base / meta_file, "wb") as f:
        pickle.dump({meta_key: names}, f)
    return _expect({s: len(v) for s, v in labels.items()}, names, labels)


def cifar10(root):
    files = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
    return _cifar(root, "cifar-10-batches-py", files, "batches.meta", "label_names", "labels", 3)


def cifar100(root):
    return _cifar(root, "cifar-100-python", [("train", "train"), ("test", "test")], "meta",
                  "fine_label_names", "fine_labels", 3)


def sun397(root):
    base = root / "SUN397"
    _write(base / "ClassName.txt", "/a/abbey\n/b/bakery/shop\n")
    for k, rel in enumerate(("a/abbey", "b/bakery/shop")):
        for i in range(101):   # 50 train, 50 test, 1 left over per class
            _image(base / rel / f"sun_{k}{i:03d}.jpg", i)
    return _expect({"train": 100, "test": 100}, ["abbey", "bakery/shop"], {"train": [0] * 50 + [1] * 50})


def stanford_cars(root):
    base = root / "stanford_cars"
    records = np.dtype([("fname", object), ("class", object)])
    _mat(base / "devkit" / "cars_meta.mat", class_names=np.array(["AM General Hummer", "Acura RL"], dtype=object))
    _mat(base / "devkit" / "cars_train_annos.mat",
         annotations=np.array([("00001.jpg", 2), ("00002.jpg", 1), ("00003.jpg", 2)], dtype=records))
    _mat(base / "cars_test_annos_withlabels.mat",
         annotations=np.array([("00001.jpg", 1), ("00002.jpg", 2)], dtype=records))
    for split, n in (("cars_train", 3), ("cars_test", 2)):
        for i in range(1, n + 1):
            _image(base / split / f"{i:05d}.jpg", i)
    return _expect({"train": 3, "test": 2}, ["AM General Hummer", "Acura RL"], {"train": [1, 0, 1], "test": [0, 1]})


def fgvc_aircraft(root):
    data = root / "fgvc-aircraft-2013b" / "data"
    _write(data / "variants.txt", "707-320\nA300B4\n")
    rows = {"train": [("1001", "A300B4"), ("1002", "707-320")], "val": [("1003", "707-320"), ("1004", "A300B4")],
            "test": [("1005", "A300B4")]}
    for split, r in rows.items():
        _write(data / f"images_variant_{split}.txt", "".join(f"{i} {c}\n" for i, c in r))
        for i, _ in r:
            _image(data / "images" / f"{i}.jpg", int(i))
    return _expect({"train": 2, "val": 2, "test": 1}, ["707-320", "A300B4"],
                   {"train": [1, 0], "val": [0, 1], "test": [1]})


def dtd(root):
    data = root / "dtd" / "dtd"
    rows = {"train": ["banded/banded_0001.jpg", "zigzagged/zigzagged_0001.jpg"],
            "val": ["zigzagged/zigzagged_0002.jpg", "banded/banded_0002.jpg"], "test": ["banded/banded_0003.jpg", "zigzagged/zigzagged_0003.jpg"]}
    for split, r in rows.items():
        _write(data / "labels" / f"{split}1.txt", "\n".join(r) + "\n")
        for i, rel in enumerate(r):
            _image(data / "images" / rel, i)
    # partition 1 only; classes are those of the split read, sorted
    return _expect({"train": 2, "val": 2, "test": 2}, ["banded", "zigzagged"],
                   {"train": [0, 1], "val": [1, 0], "test": [0, 1]})


def oxford_pets(root):
    base = root / "oxford-iiit-pet"
    rows = {"trainval": ["Abyssinian_1 1 1 1", "american_bulldog_2 2 2 1", "Abyssinian_3 1 1 1"],
            "test": ["american_bulldog_4 2 2 1", "Abyssinian_5 1 1 1"]}
    for split, r in rows.items():
        _write(base / "annotations" / f"{split}.txt", "\n".join(r) + "\n")
        for i, line in enumerate(r):
            _image(base / "images" / f"{line.split()[0]}.jpg", i)
    return _expect({"train": 3, "test": 2}, ["Abyssinian", "American Bulldog"], {"train": [0, 1, 0], "test": [1, 0]})


def caltech101(root):
    cats = root / "caltech101" / "101_ObjectCategories"
    for name, n in (("BACKGROUND_Google", 2), ("accordion", 33), ("airplanes", 31)):
        for i in range(1, n + 1):
            _image(cats / name / f"image_{i:04d}.jpg", i)
    # 30 train per class, the rest test; BACKGROUND_Google is dropped by torchvision
    return _expect({"train": 60, "test": 4}, ["accordion", "airplanes"],
                   {"train": [0] * 30 + [1] * 30, "test": [0, 0, 0, 1]})


def flowers102(root):
    from torchvision.datasets import Flowers102

    base = root / "flowers-102"
    for i in range(1, 7):
        _image(base / "jpg" / f"image_{i:05d}.jpg", i)
    for i in range(7, 109):
        _image(base / "jpg" / f"image_{i:05d}.jpg", i)
    # images 7..108 are the train split, one per class; 1..6 are val and test
    labels = [1, 2, 1, 2, 102, 1] + list(range(1, 103))
    _mat(base / "imagelabels.mat", labels=np.array(labels))
    _mat(base / "setid.mat", trnid=np.arange(7, 109), valid=np.array([3, 4]), tstid=np.array([5, 6]))
    return _expect({"train": 102, "val": 2, "test": 2}, list(Flowers102.classes),
                   {"train": list(range(102)), "val": [0, 1], "test": [101, 0]})


def _idx(raw: Path, prefix: str, labels: list[int]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    pixels = np.random.default_rng(n).integers(0, 255, (n, 28, 28), dtype=np.uint8)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + pixels.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + bytes(labels))


def mnist(root, folder="MNIST"):
    from torchvision import datasets as tv

    train = [3, 1, 4, 1, 5, 9, 2, 6, 0, 7, 8]
    _idx(root / folder / "raw", "train", train)
    _idx(root / folder / "raw", "t10k", [5, 9])
    return _expect({"train": 11, "test": 2}, list(getattr(tv, folder).classes), {"train": train, "test": [5, 9]})


def fashion_mnist(root):
    return mnist(root, "FashionMNIST")


def fer2013(root):
    rows = [(0, "Training"), (3, "PublicTest"), (6, "Training"), (4, "PrivateTest"), (3, "Training"),
            (1, "Training"), (2, "Training"), (4, "Training"), (5, "Training")]
    path = root / "fer2013" / "fer2013.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for k, (emotion, usage) in enumerate(rows):
            w.writerow([emotion, " ".join(str((k * 7 + i) % 256) for i in range(48 * 48)), usage])
    return _expect({"train": 7, "val": 1, "test": 1},
                   ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
                   {"train": [0, 6, 3, 1, 2, 4, 5], "val": [3], "test": [4]}, ids={"train": list(range(7))})


def stl10(root):
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, y in (("train", [1, 2, 2]), ("test", [2, 1])):
        (base / f"{split}_X.bin").write_bytes(rng.integers(0, 255, (len(y), 3, 96, 96), dtype=np.uint8).tobytes())
        (base / f"{split}_y.bin").write_bytes(bytes(y))   # 1-based on disk
    (base / "unlabeled_X.bin").write_bytes(b"")
    _write(base / "class_names.txt", "airplane\nbird\n")
    return _expect({"train": 3, "test": 2}, ["airplane", "bird"], {"train": [0, 1, 1], "test": [1, 0]})


def eurosat(root):
    data = root / "eurosat" / "2750"
    for name in ("AnnualCrop", "Forest"):
        for i in range(4):
            _image(data / name / f"{name}_{i}.jpg", i)
    # 1,000 train / 500 test per class, fewer here: each class keeps one test image
    return _expect({"train": 6, "test": 2}, ["AnnualCrop", "Forest"], {"train": [0] * 3 + [1] * 3, "test": [0, 1]})


def gtsrb(root):
    base = root / "gtsrb"
    for k in range(43):   # every class has its folder, 00000..00042
        for i in range(2 if k < 2 else 1):
            _image(base / "GTSRB" / "Training" / f"{k:05d}" / f"{k:05d}_{i:05d}.ppm", i, fmt="PPM")
    for i in range(3):
        _image(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", i, fmt="PPM")
    _write(base / "GT-final_test.csv", "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
           + "".join(f"{i:05d}.ppm;6;5;0;0;5;4;{k}\n" for i, k in enumerate((1, 0, 1))))
    return _expect({"train": 45, "test": 3}, [str(i) for i in range(43)],
                   {"train": [0, 0, 1, 1] + list(range(2, 43)), "test": [1, 0, 1]})


def country211(root):
    base = root / "country211"
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        for cc in ("AD", "AE"):
            for i in range(n):
                _image(base / split / cc / f"{i}.jpg", i)
    return _expect({"train": 4, "val": 2, "test": 2}, ["AD", "AE"], {"train": [0, 0, 1, 1], "val": [0, 1]})


def pcam(root):
    import h5py

    base = root / "pcam"
    base.mkdir(parents=True)
    labels = {"train": [1, 0, 1], "valid": [0, 1], "test": [1, 0]}
    for split, y in labels.items():
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = np.random.default_rng(len(y)).integers(0, 255, (len(y), 8, 8, 3), dtype=np.uint8)
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = np.asarray(y, np.uint8).reshape(-1, 1, 1, 1)
    return _expect({"train": 3, "val": 2, "test": 2},
                   ["lymph node", "lymph node containing metastatic tumor tissue"],
                   {"train": [1, 0, 1], "val": [0, 1], "test": [1, 0]})


def rendered_sst2(root):
    base = root / "rendered-sst2"
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        for label in ("negative", "positive"):
            for i in range(n):
                _image(base / split / label / f"{i}.png", i)
    return _expect({"train": 4, "val": 2, "test": 2}, ["negative", "positive"],
                   {"train": [0, 0, 1, 1], "val": [0, 1], "test": [0, 1]})


def clevr_count(root):
    data = root / "clevr" / "CLEVR_v1.0"
    counts = {"train": [3, 10, 5, 4, 6, 7, 8, 9], "val": [4, 3]}
    for split, c in counts.items():
        scenes = []
        for i, n in enumerate(c):
            name = f"CLEVR_{split}_{i:06d}.png"
            _image(data / "images" / split / name, i)
            scenes.append({"image_filename": name, "objects": [{}] * n})
        _write(data / "scenes" / f"CLEVR_{split}_scenes.json", json.dumps({"scenes": scenes}))
    # at most 2,000 train / 500 test: all of these; labels are counts 3..10 as class indices
    return _expect({"train": 8, "test": 2}, [str(n) for n in range(3, 11)],
                   {"train": [0, 7, 2, 1, 3, 4, 5, 6], "test": [1, 0]})


def imagenet(root):
    import torch

    base = root / "imagenet"
    wnids = {"n01440764": ("tench", "Tinca tinca"), "n01443537": ("goldfish", "Carassius auratus")}
    for split, n in (("train", 2), ("val", 1)):
        for k, wnid in enumerate(wnids):
            for i in range(n):
                _image(base / split / wnid / f"{wnid}_{i}.JPEG", i)
    torch.save((wnids, list(wnids)), base / "meta.bin")
    return _expect({"train": 4, "test": 2}, ["tench, Tinca tinca", "goldfish, Carassius auratus"],
                   {"train": [0, 0, 1, 1], "test": [0, 1]})


def _voc_xml(objects: list[tuple[str, int]]) -> str:
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
    return f"<annotation><filename>x.jpg</filename>{objs}</annotation>"


def voc2007(root):
    from clipprobe.data.registry import VOC_CLASSES

    voc = root / "VOCdevkit" / "VOC2007"
    rest = [(c, 0) for c in VOC_CLASSES if c not in ("chair", "dog", "car")]
    images = {"train": {"000005": [("chair", 0), ("chair", 1), ("dog", 0)], "000007": [("car", 0), ("dog", 1)],
                        "000008": rest},
              "val": {"000009": [("horse", 0), ("person", 1)]},
              "test": {"000001": [("dog", 0), ("person", 0)], "000002": [("train", 0)]}}
    expected = {}
    for split, imgs in images.items():
        _write(voc / "ImageSets" / "Main" / f"{split}.txt", "\n".join(imgs) + "\n")
        expected[split] = []
        for i, (name, objects) in enumerate(imgs.items()):
            _image(voc / "JPEGImages" / f"{name}.jpg", i)
            _write(voc / "Annotations" / f"{name}.xml", _voc_xml(objects))
            row = [0] * len(VOC_CLASSES)
            for obj, difficult in objects:   # 1: a non-difficult object; -1: difficult ones only
                k = VOC_CLASSES.index(obj)
                row[k] = 1 if not difficult or row[k] == 1 else -1
            expected[split].append(row)
    return _expect({"train": 3, "val": 1, "test": 2}, list(VOC_CLASSES), expected)


BUILDERS = {
    "food101": food101, "cifar10": cifar10, "cifar100": cifar100, "sun397": sun397,
    "stanford-cars": stanford_cars, "fgvc-aircraft": fgvc_aircraft, "dtd": dtd, "oxford-pets": oxford_pets,
    "caltech101": caltech101, "flowers102": flowers102, "mnist": mnist, "fashion-mnist": fashion_mnist,
    "fer2013": fer2013, "stl10": stl10, "eurosat": eurosat, "gtsrb": gtsrb, "country211": country211,
    "pcam": pcam, "rendered-sst2": rendered_sst2, "clevr-count": clevr_count, "imagenet": imagenet,
    "voc2007": voc2007,
}
