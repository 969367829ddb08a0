"""Zero-shot: the prompts files, and classification of features by class embeddings."""

import json

import numpy as np
import pytest
import yaml
from conftest import REPO

from clipprobe import identity
from clipprobe.data import registry
from clipprobe.errors import ClipprobeError
from clipprobe.zeroshot import prompts
from clipprobe.zeroshot import score as zeroshot_score

PACKAGE_PROMPTS = REPO / "src" / "clipprobe" / "prompts.json"


def test_every_named_dataset_has_the_papers_prompts_in_the_package_file():
    entries = json.loads(PACKAGE_PROMPTS.read_text())
    for name in registry.names():
        entry = entries[name]
        assert entry["source"]
        if "classnames" in entry and entry["classnames"] is not None:
            n = len(entry["classnames"])
            p = prompts.load(PACKAGE_PROMPTS, name, [f"c{i}" for i in range(n)], named=True)
            assert len(p.classnames) == n and p.templates
    cifar10 = prompts.load(PACKAGE_PROMPTS, "cifar10", [f"c{i}" for i in range(10)], named=True)
    assert cifar10.classnames[0] == ("airplane",) and len(cifar10.templates) == 18   # the paper's 18
    assert cifar10.texts(1)[0] == "a photo of a automobile."


def test_imagenet_prompts_come_from_open_clip():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    p = prompts.load(PACKAGE_PROMPTS, "imagenet", [f"n{i}" for i in range(1000)], named=True)
    assert [n[0] for n in p.classnames] == list(IMAGENET_CLASSNAMES) and len(p.templates) == 80


def test_synonyms_give_one_prompt_per_name_and_template():
    p = prompts.load(PACKAGE_PROMPTS, "fer2013", [str(i) for i in range(7)], named=True)
    assert len(p.texts(5)) == 3 * len(p.templates) and "a photo of a shocked looking face." in p.texts(5)


def test_image_folder_gets_its_folder_names_in_a_photo_of_a():
    p = prompts.load(PACKAGE_PROMPTS, "/data/my_pets", ["cat", "golden_retriever"], named=False)
    assert p.texts(1) == ["a photo of a golden retriever."]


def test_a_sources_own_templates_serve_where_the_prompts_file_has_no_entry_for_it(tmp_path):
    own = {"templates": ["a blurry photo of a {}."], "templates_source": "/d/zeroshot_classification_templates.txt"}
    p = prompts.load(PACKAGE_PROMPTS, "wds:/d/{split}/0.tar", ["cat", "tabby_cat"], named=False, own=own)
    assert p.texts(1) == ["a blurry photo of a tabby cat."] and "zeroshot_classification_templates.txt" in p.source
    f = tmp_path / "mine.yaml"   # a file of one entry is the user's choice: it wins
    f.write_text(yaml.safe_dump({"templates": ["art of a {}."]}))
    assert prompts.load(f, "wds:/d/{split}/0.tar", ["cat", "dog"], named=False, own=own).texts(0) == ["art of a cat."]


def test_users_file_maps_classes_to_names(tmp_path):
    f = tmp_path / "prompts.yaml"
    f.write_text(yaml.safe_dump({"templates": ["a {} in the wild."], "classnames": {"cat": "house cat", "dog": "dog"}}))
    p = prompts.load(f, "/data/pets", ["cat", "dog"], named=False)
    assert p.texts(0) == ["a house cat in the wild."]


@pytest.mark.parametrize("content, words", [
    ({"templates": ["a photo of a {}."], "classnames": {"cat": "cat"}}, ["'dog'", "missing"]),
    ({"templates": []}, ["no templates"]),
    ({"templates": ["a photo of a {c}."]}, ["exactly one {}"]),
    ({"templates": ["a photo."]}, ["exactly one {}"]),
    ({"templates": ["a {}."], "classnames": ["cat"]}, ["1 class names", "2 classes"]),
    ({"cifar10": {"templates": ["a {}."]}}, ["no entry for dataset 'mnist'"]),
    (None, ["empty"]),
])
def test_bad_prompts_file_is_one_line_naming_the_param_and_culprit(tmp_path, content, words):
    f = tmp_path / "prompts.yaml"
    f.write_text("" if content is None else yaml.safe_dump(content))
    with pytest.raises(ClipprobeError) as e:
        prompts.load(f, "mnist", ["cat", "dog"], named=True)
    msg = str(e.value)
    assert "zeroshot.templates" in msg and "\n" not in msg
    for w in words:
        assert w in msg


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_features_near_known_class_embeddings_are_classified_as_their_class():
    rng = np.random.default_rng(0)
    class_emb = _unit(rng.normal(size=(7, 24))).astype(np.float32)
    y = rng.integers(0, 7, 200)
    x = 3 * class_emb[y] + 0.05 * rng.normal(size=(200, 24))
    assert np.array_equal(zeroshot_score.scores(x, class_emb).argmax(1), y)


def test_pre_projection_features_are_projected_before_classifying():
    rng = np.random.default_rng(1)
    class_emb = _unit(rng.normal(size=(5, 16)))
    proj = rng.normal(size=(40, 16))
    y = np.arange(5).repeat(10)
    pre = class_emb[y] @ np.linalg.pinv(proj)          # pre @ proj == the class embeddings
    assert np.array_equal(zeroshot_score.scores(pre, class_emb, proj).argmax(1), y)
    with pytest.raises(ClipprobeError, match="40 dimensions"):
        zeroshot_score.scores(pre, class_emb)


def test_features_of_another_model_are_refused():
    info = {"arch": "ViT-B-32", "weights_id": "a", "classes": ["x", "y"]}
    identity.check(info, dict(info), ("arch", "weights_id", "classes"), "features/test", "the class embeddings were made for")
    with pytest.raises(ClipprobeError, match="weights_id"):
        identity.check(info, {**info, "weights_id": "b"}, ("arch", "weights_id", "classes"), "features/test", "the class embeddings were made for")


def test_package_prompts_fit_the_registrys_fixed_class_lists():
    for name in registry.names():
        entry = registry.get(name)
        if entry.classes is not None:
            p = prompts.load(PACKAGE_PROMPTS, name, list(entry.classes), named=True)
            assert len(p.classnames) == len(entry.classes), name
