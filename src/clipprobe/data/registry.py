"""The datasets clipprobe knows, one entry each.

An entry says what loads it, how the CLIP paper's splits map
onto it, where its class names come from, its headline metric, and whether it downloads itself.

Light on purpose (no torch), and imported only where data is read: the `inputs` stage checks
`data.name` against it and `prepare` loads the entry (`data.registered`), writing what later stages
need (the headline metric, whether the dataset is a named one) into the prepared `info.json`.  Adding
an entry thus reruns `inputs` and `prepare` only, and nothing after them while their outputs stay the
same.  The README's dataset table is generated from the entries (`tools/readme_tables.py`).  Sizes quoted are the CLIP paper's (Radford et al.
2021, "Learning Transferable Visual Models From Natural Language Supervision", appendix A.1, Table 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from clipprobe.metrics import MAP11, MEAN_PER_CLASS, TOP1
from clipprobe.metrics import NAMES as METRICS

SPLITS = ("train", "val", "test")


def _frozen(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Dataset:
    """One dataset.  `splits` maps each of the paper's splits (train, test, and val where the
    dataset has an official one, which `C: auto` then searches on) to the keyword arguments of
    `loader` that give its source split; `kwargs` go to every split.

    Where the source has fewer splits than the paper uses, one of two carves applies, seeded with
    `seed`: `per_class` = (train, test) images drawn per class from the one source split (test
    None: all the rest), or `sample` = a random subset of that many images of a paper split.
    """
    name: str                          # data.name; zero-shot's key for class names and templates
    loader: str                        # a torchvision.datasets class, or a reader in data.readers.READERS
    splits: Mapping[str, Mapping]
    split_source: str                  # where the mapping comes from
    metric: str = TOP1
    classes: tuple[str, ...] | None = None   # None: the loader's own class names
    label_values: tuple | None = None  # the loader's labels in class order, where they are not 0..n-1
    kwargs: Mapping = field(default_factory=dict)
    download: str | None = None        # None: torchvision downloads it; else what to put under data.root
    per_class: tuple[int, int | None] | None = None
    sample: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    multi_label: bool = False
    subdir: str = ""                   # the loader's root below data.root, for loaders without their own

    def __post_init__(self):
        for key in ("splits", "kwargs", "sample"):
            object.__setattr__(self, key, _frozen(getattr(self, key)))
        assert self.metric in METRICS and set(self.splits) <= set(SPLITS) and "train" in self.splits, self.name
        assert "test" in self.splits or self.per_class, self.name

    @property
    def paper_splits(self) -> tuple[str, ...]:
        """The splits `prepare` writes."""
        return tuple(s for s in SPLITS if s in self.splits or (self.per_class and s == "test"))

    def split_text(self) -> str:
        """The split mapping in words, for the README and info.json."""
        def source(kw: Mapping) -> str:
            return ", ".join(f"{k}={v}" for k, v in kw.items()) or "all"
        if self.per_class:
            tr, te = self.per_class
            return (f"train {tr} and test {te if te else 'the rest'} per class, drawn from "
                    f"{source(self.splits['train'])} images (seed {self.seed})")
        parts = []
        for s in self.paper_splits:
            n = self.sample.get(s)
            parts.append(f"{s}: {source(self.splits[s])}" + (f" ({n:,} random, seed {self.seed})" if n else ""))
        return "; ".join(parts)


VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
# FER2013's emotion codes 0..6 (the Kaggle challenge's data description)
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_ENTRIES = (
    Dataset("food101", "Food101", {"train": {"split": "train"}, "test": {"split": "test"}},
            "official (Table 9: 75,750 / 25,250)"),
    Dataset("cifar10", "CIFAR10", {"train": {"train": True}, "test": {"train": False}},
            "official (Table 9: 50,000 / 10,000)"),
    Dataset("cifar100", "CIFAR100", {"train": {"train": True}, "test": {"train": False}},
            "official (Table 9: 50,000 / 10,000)"),
    Dataset("sun397", "SUN397", {"train": {}}, per_class=(50, 50),
            split_source="torchvision has no split (the official Partitions/ files are a separate "
                         "download): 50 train and 50 test images per class, as Table 9's 19,850 / 19,850"),
    Dataset("stanford-cars", "StanfordCars", {"train": {"split": "train"}, "test": {"split": "test"}},
            "official (Table 9: 8,144 / 8,041)",
            download="its site is gone: put the Stanford Cars files (devkit/ with cars_meta.mat and "
                     "cars_train_annos.mat, cars_train/, cars_test/, cars_test_annos_withlabels.mat) "
                     "in {root}/stanford_cars/"),
    Dataset("fgvc-aircraft", "FGVCAircraft",
            {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
            "official train/val/test; train+val = Table 9's 6,667, test 3,333",
            metric=MEAN_PER_CLASS, kwargs={"annotation_level": "variant"}),
    Dataset("dtd", "DTD", {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
            "official partition 1; train+val = Table 9's 3,760, test 1,880", kwargs={"partition": 1}),
    Dataset("oxford-pets", "OxfordIIITPet", {"train": {"split": "trainval"}, "test": {"split": "test"}},
            "official trainval/test (Table 9: 3,680 / 3,669)", metric=MEAN_PER_CLASS),
    Dataset("caltech101", "Caltech101", {"train": {}}, per_class=(30, None), metric=MEAN_PER_CLASS,
            split_source="no official split: 30 train images per class, the rest test, as Table 9's "
                         "3,060 train (the paper's 102 classes include BACKGROUND_Google, which "
                         "torchvision drops: 101 here)"),
    Dataset("flowers102", "Flowers102",
            {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
            "official; train+val = Table 9's 2,040, test 6,149", metric=MEAN_PER_CLASS),
    Dataset("mnist", "MNIST", {"train": {"train": True}, "test": {"train": False}},
            "official (Table 9: 60,000 / 10,000)"),
    Dataset("fashion-mnist", "FashionMNIST", {"train": {"train": True}, "test": {"train": False}},
            "official 60,000 / 10,000 (not in the paper); also read from Debian's dataset-fashion-mnist"),
    Dataset("fer2013", "fer2013",
            {"train": {"usage": "Training"}, "val": {"usage": "PublicTest"}, "test": {"usage": "PrivateTest"}},
            "the challenge's Usage column: Training / PublicTest / PrivateTest (Table 9: 32,140 train "
            "incl. validation, 3,574 test)", classes=FER_CLASSES,
            download="Kaggle needs a login: put fer2013.csv (or icml_face_data.csv) from "
                     "kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge "
                     "in {root}/fer2013/"),
    Dataset("stl10", "STL10", {"train": {"split": "train"}, "test": {"split": "test"}},
            "official 5,000 / 8,000 (the paper's Table 9 lists 1,000 train: one of the 10 folds)"),
    Dataset("eurosat", "EuroSAT", {"train": {}}, per_class=(1000, 500),
            split_source="no official split: 1,000 train and 500 test images per class, Table 9's "
                         "10,000 / 5,000"),
    Dataset("gtsrb", "GTSRB", {"train": {"split": "train"}, "test": {"split": "test"}},
            "official 39,209 / 12,630 (Table 9's 26,640 train is an undocumented subset)",
            classes=tuple(str(i) for i in range(43))),   # GTSRB's ClassId; torchvision names none
    Dataset("country211", "Country211",
            {"train": {"split": "train"}, "val": {"split": "valid"}, "test": {"split": "test"}},
            "official (OpenAI's release: 150 / 50 / 100 per class; Table 9: 21,100 test)"),
    Dataset("pcam", "PCAM", {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
            "official (Table 9: 294,912 / 32,768); torchvision downloads it with `pip install gdown`",
            classes=("lymph node", "lymph node containing metastatic tumor tissue")),
    Dataset("rendered-sst2", "RenderedSST2",
            {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
            "official (OpenAI's release); train+val = Table 9's 7,792, test 1,821"),
    Dataset("clevr-count", "CLEVRClassification", {"train": {"split": "train"}, "test": {"split": "val"}},
            "VTAB's clevr count_all (labels: objects per image, 3..10; test from CLEVR's val split, "
            "whose test split has no labels), subsampled to Table 9's 2,000 / 500",
            sample={"train": 2000, "test": 500}, classes=tuple(str(n) for n in range(3, 11)),
            label_values=tuple(range(3, 11))),
    Dataset("imagenet", "ImageNet", {"train": {"split": "train"}, "test": {"split": "val"}},
            "official train / val as test (Table 9: 1,281,167 / 50,000)",
            download="no public download: put ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_train.tar "
                     "and ILSVRC2012_img_val.tar (image-net.org) in {root}/imagenet/", subdir="imagenet"),
    Dataset("voc2007", "VOCDetection",
            {"train": {"image_set": "train"}, "val": {"image_set": "val"}, "test": {"image_set": "test"}},
            "official; train+val = Table 9's 5,011, test 4,952; labels: the classes with a "
            "non-difficult object in the image", metric=MAP11, classes=VOC_CLASSES, kwargs={"year": "2007"},
            multi_label=True),
)

REGISTRY: Mapping[str, Dataset] = _frozen({d.name: d for d in _ENTRIES})
assert len(REGISTRY) == len(_ENTRIES)


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Dataset | None:
    """The entry of `name`, or None for a user's ImageFolder path."""
    return REGISTRY.get(name)
