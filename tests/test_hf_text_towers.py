"""Hugging Face CLIP and SigLIP text towers serve zero-shot as transformers computes it: the class
embeddings and the image-text similarities equal the library's own (`get_text_features` on its
tokenizer's output, `get_image_features` on its image processor's), models without one say so."""

import numpy as np
import pytest
import torch
from conftest import make_hf_text_model
from PIL import Image

from clipprobe.encode import encoders
from clipprobe.zeroshot import classifier, prompts, score

CPU = torch.device("cpu")
PROMPTS = prompts.Prompts(classnames=(("cat",), ("dog", "puppy"), ("owl",)),
                          templates=("a photo of a {}.", "a blurry photo of the {}."), source="test")


@pytest.fixture(scope="module", params=["clip", "siglip"])
def model_dir(request, tmp_path_factory):
    return request.param, make_hf_text_model(tmp_path_factory.mktemp(request.param) / "m", request.param)


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output   # transformers < 5 gives the tensor


def _library(path):
    import transformers as t
    return (t.AutoModel.from_pretrained(path).eval(), t.AutoTokenizer.from_pretrained(path),
            t.AutoImageProcessor.from_pretrained(path))


def _images(n=6):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


def test_class_embeddings_equal_transformers_own(model_dir):
    """The library's way: CLIP's tokenizer with padding and attention mask, SigLIP's padded to its
    context length as it was trained (the hub's model cards); each prompt normalised, the mean normalised."""
    family, path = model_dir
    ours, cut = classifier.class_embeddings(encoders.load_text_encoder(f"hf:{path}", "pretrained"), PROMPTS, CPU)
    model, tokenizer, _ = _library(path)
    padding = {"padding": True} if family == "clip" else {"padding": "max_length", "max_length": 64}
    with torch.no_grad():
        for label in range(3):
            emb = _features(model.get_text_features(**tokenizer(PROMPTS.texts(label), return_tensors="pt", **padding)))
            emb = torch.nn.functional.normalize(emb, dim=-1).mean(0)
            assert float(ours[label] @ (emb / emb.norm()).numpy()) >= 0.9999, (family, label)
    assert cut == []


def test_zero_shot_scores_equal_transformers_image_text_similarity(model_dir):
    """Image features as extract gives them (`pre_logits`), through the image projection where the
    model has one (CLIP's `visual_projection`; SigLIP's pooled output is in the text's space already)."""
    family, path = model_dir
    name = f"hf:{path}"
    text = encoders.load_text_encoder(name, "pretrained")
    image = encoders.load_encoder(name, "pretrained")
    class_emb, _ = classifier.class_embeddings(text, PROMPTS, CPU)
    assert (text.arch, text.weights_id) == (image.arch, image.weights_id) == (f"hf:{family}", text.weights_id)
    assert (text.image_proj is None) == (family == "siglip")
    model, _, processor = _library(path)
    with torch.no_grad():
        x = image.visual(torch.stack([image.preprocess(i) for i in _images()])).numpy()
        ref = _features(model.get_image_features(**processor(images=_images(), return_tensors="pt")))
    ours = score.scores(x, class_emb, None if text.image_proj is None else text.image_proj.numpy())
    expected = torch.nn.functional.normalize(ref, dim=-1).numpy() @ class_emb.T
    assert np.abs(ours - expected).max() < 1e-5


def test_hf_clip_cls_avgpatch_tokens_are_normalised_as_its_pooled_token(tmp_path):
    """CLIP's vision model normalises only its pooled class token; cls_avgpatch normalises every token
    the same way, so its class-token half is the pooled output that zero-shot projects."""
    path = make_hf_text_model(tmp_path / "clip", "clip")
    enc = encoders.load_encoder(f"hf:{path}", "pretrained", "cls_avgpatch")
    model, _, processor = _library(path)
    with torch.no_grad():
        x = enc.visual(torch.stack([enc.preprocess(i) for i in _images()])).numpy()
        out = model.vision_model(**processor(images=_images(), return_tensors="pt"))
        tokens = model.vision_model.post_layernorm(out.last_hidden_state)
    assert x.shape == (6, 64) and enc.embed_dim == 64
    assert np.abs(x[:, :32] - out.pooler_output.numpy()).max() < 1e-5
    assert np.abs(x[:, 32:] - tokens[:, 1:].mean(dim=1).numpy()).max() < 1e-5


def test_prompts_the_hf_tokenizer_cuts_before_the_class_name_ends_are_found(tmp_path):
    path = make_hf_text_model(tmp_path / "clip", "clip", context=24)   # characters: ~20 letters fit
    ps = prompts.Prompts(classnames=(("cat",), ("a very long class name",)), templates=("a {}", "a photo of a {}"),
                         source="test")
    cuts = classifier.cut_prompts(encoders.load_text_encoder(f"hf:{path}", "pretrained").tokenizer, ps)
    assert [(c.label, c.cut) for c in cuts] == [(1, (("a very long class name", "a photo of a {}"),))]


def test_an_hf_model_without_a_text_tower_names_those_that_have_one(tmp_path):
    import transformers as t
    t.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                image_size=32, patch_size=8).save_pretrained(tmp_path / "vit")
    t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    assert encoders.no_text_tower(f"hf:{tmp_path / 'vit'}") == (
        "a Hugging Face vit model is probed on its image tower; zero-shot reads the text towers of open_clip "
        "models and of Hugging Face clip and siglip models")
    assert encoders.no_text_tower(f"hf:{make_hf_text_model(tmp_path / 'siglip', 'siglip')}") is None
