"""Features equal what OpenAI's README linear-probe loop computes for the same weights and images."""

import sys
import types

import numpy as np
import packaging.version
import pytest
import torch
from conftest import REPO, make_image_folder
from PIL import Image

from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.encode import checkpoint, encoders, extract, store
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams

TINY_OPENAI = str(REPO / "tests" / "tiny-openai.json")

# OpenAI's clip package (clip-anytorch is its PyPI copy) imports `packaging` from the
# pkg_resources that new setuptools no longer ships; hand it the real `packaging`.
sys.modules.setdefault("pkg_resources", types.SimpleNamespace(packaging=packaging))
clip = pytest.importorskip("clip", reason="test extra: pip install clip-anytorch")


def _openai_model():
    """A tiny CLIP built by OpenAI's own code, in fp16 as OpenAI's checkpoints are."""
    from clip.model import CLIP, convert_weights
    torch.manual_seed(7)
    model = CLIP(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                 context_length=16, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=1)
    convert_weights(model)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The same weights as an OpenAI-style TorchScript archive and as a plain state dict."""
    d = tmp_path_factory.mktemp("ckpt")
    model = _openai_model()
    for key, value in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 49408)):
        if hasattr(model, key):
            delattr(model, key)
        model.register_buffer(key, torch.tensor(value))   # OpenAI's archives carry these too
    image, text = torch.zeros(1, 3, 32, 32, dtype=torch.half), torch.zeros(1, 16, dtype=torch.long)
    with torch.no_grad():
        traced = torch.jit.trace(model.float(), (image.float(), text), check_trace=False)
    traced.half()
    traced.save(str(d / "ViT-tiny.pt"))
    torch.save(_openai_model().state_dict(), d / "state_dict.pt")
    return d


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("imgs") / "f", n_train=4, n_test=2, size=45)
    Image.new("L", (50, 30), 90).save(root / "train" / "cat" / "gray.png")  # grayscale, not square
    return root


def _ours(weights, images, tmp_path, layer="projection"):
    prepared = tmp_path / "prepared"
    info = prepare(DataParams(name=str(images)), prepared)
    enc = encoders.load_encoder(TINY_OPENAI, str(weights), layer)
    cpu = torch.device("cpu")
    spec = extract.spec(enc, TINY_OPENAI, str(weights), batch_size=5, shard_size=7, device=cpu,
                         dtype=torch.float32)
    manifest = extract.extract_split(enc, prepared, "train", tmp_path / "scratch", spec, "x", device=cpu,
                                      dtype=torch.float32, workers=0)
    x, _, ids, _ = store.read_features(tmp_path / "scratch")
    paths = prepared_data.read_split(prepared, "train").column("path").to_pylist()
    return x, [images / p for p in paths], manifest, info


def _reference(weights, files):
    """OpenAI's README loop: preprocess(PIL image) then model.encode_image, on CPU in fp32."""
    model, preprocess = clip.load(str(weights), device="cpu", jit=False)
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.open(f)) for f in files])
        return model.encode_image(batch).float().numpy()


def _cosine(a, b):
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("name", ["ViT-tiny.pt", "state_dict.pt"])
def test_features_match_openai_reference(checkpoints, images, tmp_path, name):
    x, files, manifest, _ = _ours(checkpoints / name, images, tmp_path)
    ref = _reference(checkpoints / name, files)
    assert x.shape == ref.shape == (len(files), 32)
    assert _cosine(x, ref).min() >= 0.9999


def test_torchscript_archive_is_detected(checkpoints):
    assert checkpoint.is_torchscript(checkpoints / "ViT-tiny.pt")
    assert not checkpoint.is_torchscript(checkpoints / "state_dict.pt")


def test_pre_projection_features_project_to_encode_image(checkpoints, images, tmp_path):
    pre, files, _, _ = _ours(checkpoints / "ViT-tiny.pt", images, tmp_path / "pre", layer="pre_projection")
    post, _, _, _ = _ours(checkpoints / "ViT-tiny.pt", images, tmp_path / "post")
    proj = _openai_model().visual.proj.detach().float().numpy()
    assert pre.shape[1] == 64
    assert _cosine(pre @ proj, post).min() >= 0.9999


def test_cls_avgpatch_is_the_class_token_and_mean_patch_token_after_the_final_norm(checkpoints, images, tmp_path):
    """open_clip's cls_avgpatch against OpenAI's model: its last block's tokens through `ln_post`,
    the class token beside the mean patch token; the class half projects to `encode_image`."""
    ours, files, manifest, _ = _ours(checkpoints / "ViT-tiny.pt", images, tmp_path, layer="cls_avgpatch")
    model, preprocess = clip.load(str(checkpoints / "ViT-tiny.pt"), device="cpu", jit=False)
    seen = {}
    hook = model.visual.transformer.register_forward_hook(lambda m, i, out: seen.setdefault("tokens", out))
    with torch.no_grad():
        emb = model.encode_image(torch.stack([preprocess(Image.open(f)) for f in files])).float().numpy()
        tokens = model.visual.ln_post(seen["tokens"].permute(1, 0, 2)).float()   # LND -> NLD
    hook.remove()
    ref = torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=-1).numpy()
    assert manifest["layer"] == "cls_avgpatch" and ours.shape == ref.shape == (len(files), 128)
    assert _cosine(ours, ref).min() >= 0.9999
    assert _cosine(ours[:, :64] @ model.visual.proj.detach().float().numpy(), emb).min() >= 0.9999


def test_checkpoint_that_does_not_fit_names_both(checkpoints):
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder("ViT-B/32", str(checkpoints / "ViT-tiny.pt"))
    msg = str(e.value)
    assert "ViT-tiny.pt" in msg and "ViT-B/32" in msg and "size mismatch" in msg


def test_text_class_embeddings_match_openai_reference(checkpoints):
    """The zero-shot classifier's class embeddings equal those OpenAI's code makes (clip.tokenize +
    encode_text, each prompt normalised, the class mean normalised), class by class."""
    from clipprobe.zeroshot import classifier, prompts

    ps = prompts.Prompts(classnames=(("cat",), ("dog", "puppy"), ("owl",)),
                         templates=("a photo of a {}.", "a blurry photo of the {}."), source="test")
    for name in ("ViT-tiny.pt", "state_dict.pt"):
        ours, cut = classifier.class_embeddings(encoders.load_text_encoder(TINY_OPENAI, str(checkpoints / name)),
                                                ps, torch.device("cpu"))
        assert cut == []
        model, _ = clip.load(str(checkpoints / name), device="cpu", jit=False)
        with torch.no_grad():
            for label in range(3):
                emb = model.encode_text(clip.tokenize(ps.texts(label), context_length=16)).float()
                emb = torch.nn.functional.normalize(emb, dim=-1).mean(0)
                ref = (emb / emb.norm()).numpy()
                assert float(ours[label] @ ref) / float(np.linalg.norm(ours[label])) >= 0.9999, (name, label)
