"""timm and Hugging Face features equal each library's own pipeline (its transform, then its model)
for the same weights and images: cosine >= 0.9999 per image, fp32 on CPU."""

import numpy as np
import pytest
import torch
from conftest import make_image_folder
from PIL import Image

from clipprobe.data import prepared as prepared_data
from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, preprocess, store
from clipprobe.params import DataParams

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images smaller than the models' input (resized on the device) and larger (resized in the
    loader), square and not, RGB and grayscale."""
    root = make_image_folder(tmp_path_factory.mktemp("imgs") / "f", n_train=2, n_test=1, size=45)
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate([(230, 190), (64, 100), (300, 300)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "train" / "dog" / f"big{i}.png")
    Image.new("L", (50, 30), 90).save(root / "train" / "cat" / "gray.png")
    return root


def _ours(name, weights, images, tmp_path, layer="auto"):
    """clipprobe's extraction of the train split: features, and the image files in row order."""
    prepared = tmp_path / "prepared"
    prepare(DataParams(name=str(images)), prepared)
    enc = encoders.load_encoder(name, str(weights), layer)
    spec = extract.spec(enc, name, str(weights), batch_size=4, shard_size=50, device=CPU, dtype=torch.float32)
    extract.extract_split(enc, prepared, "train", tmp_path / "scratch", spec, "x", device=CPU, dtype=torch.float32,
                          workers=0)
    x, _, _, manifest = store.read_features(tmp_path / "scratch")
    paths = prepared_data.read_split(prepared, "train").column("path").to_pylist()
    return x, [images / p for p in paths], manifest, enc


def _cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _timm_reference(arch, ckpt):
    """timm's own pipeline: the model's eval transform (resolve_model_data_config + create_transform)
    on each PIL image, then forward_features and forward_head(pre_logits=True)."""
    import timm
    from timm.data import create_transform, resolve_model_data_config

    model = timm.create_model(arch, pretrained=False).eval()
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    return model, transform


@pytest.mark.parametrize("arch", ["test_vit", "test_convnext", "test_resnet"])   # a ViT, two CNNs (bicubic, bilinear)
def test_timm_features_match_timms_own_pipeline(arch, images, tmp_path):
    import timm
    torch.manual_seed(3)
    ckpt = tmp_path / f"{arch}.pth"
    torch.save(timm.create_model(arch, pretrained=False).state_dict(), ckpt)   # with its classifier head
    x, files, manifest, enc = _ours(f"timm:{arch}", ckpt, images, tmp_path)
    model, transform = _timm_reference(arch, ckpt)
    with torch.no_grad():
        batch = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
        ref = model.forward_head(model.forward_features(batch), pre_logits=True).numpy()
    assert type(preprocess.for_model(enc.preprocess)).__name__ == "TensorPreprocess"   # the fast path is kept
    assert manifest["layer"] == "pre_logits" and manifest["arch"] == f"timm:{arch}" and x.shape == ref.shape
    cos = _cosines(x, ref)
    assert cos.min() >= 0.9999, dict(zip((f.name for f in files), cos.round(6)))


def test_timm_cls_avgpatch_is_the_class_token_and_the_mean_patch_token(images, tmp_path):
    import timm
    torch.manual_seed(4)
    ckpt = tmp_path / "vit.pth"
    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), ckpt)
    x, files, manifest, _ = _ours("timm:test_vit", ckpt, images, tmp_path, layer="cls_avgpatch")
    model, transform = _timm_reference("test_vit", ckpt)
    with torch.no_grad():
        tokens = model.forward_features(torch.stack([transform(Image.open(f).convert("RGB")) for f in files]))
    ref = torch.cat([tokens[:, 0], tokens[:, model.num_prefix_tokens:].mean(1)], dim=1).numpy()
    assert manifest["layer"] == "cls_avgpatch" and x.shape == (len(files), 2 * model.num_features)
    assert _cosines(x, ref).min() >= 0.9999


def _hf_dir(tmp_path, kind):
    """A tiny transformers vision model and its image processor saved as a directory."""
    import transformers as t
    torch.manual_seed(5)
    d = tmp_path / kind
    if kind == "vit":    # resize to a square, no crop; pooled output (dense + tanh)
        t.ViTModel(t.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=32, patch_size=8)).save_pretrained(d)
        t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    else:                # DINOv2: shortest edge + centre crop, bicubic; pooled output = normalised class token
        t.Dinov2Model(t.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, image_size=28, patch_size=14)).save_pretrained(d)
        t.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(d)
    return d


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_hf_features_match_the_processor_then_the_model(kind, images, tmp_path):
    import transformers as t
    d = _hf_dir(tmp_path, kind)
    x, files, manifest, _ = _ours(f"hf:{d}", "pretrained", images, tmp_path)
    model, processor = t.AutoModel.from_pretrained(d).eval(), t.AutoImageProcessor.from_pretrained(d)
    with torch.no_grad():
        out = model(**processor(images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt"))
    ref = out.pooler_output.numpy()
    assert manifest["layer"] == "pre_logits" and manifest["weights_id"].startswith("sha256:") and x.shape == ref.shape
    assert _cosines(x, ref).min() >= 0.9999


def test_hf_random_weights_are_seeded_and_identified_by_the_config(tmp_path):
    d = _hf_dir(tmp_path, "vit")
    a, b = (encoders.load_encoder(f"hf:{d}", "random") for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.visual.parameters(), b.visual.parameters()))
    assert a.weights_id == b.weights_id and a.weights_id.startswith("random(seed=0, config sha256:")
    cfg = (d / "config.json").read_text()
    (d / "config.json").write_text(cfg.replace('"num_hidden_layers": 2', '"num_hidden_layers": 1'))
    assert encoders.load_encoder(f"hf:{d}", "random").weights_id != a.weights_id


def test_hf_classification_checkpoint_is_probed_on_the_class_token_its_classifier_reads(images, tmp_path):
    """A ViTForImageClassification checkpoint has no trained pooler for the base ViTModel: not its
    random pooler, the class token of last_hidden_state (the classifier's input) is the feature."""
    import transformers as t
    torch.manual_seed(6)
    d = tmp_path / "vit-cls"
    t.ViTForImageClassification(t.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, image_size=32, patch_size=8,
                                             num_labels=3)).save_pretrained(d)
    t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    x, files, _, _ = _ours(f"hf:{d}", "pretrained", images, tmp_path)
    model, processor = t.ViTForImageClassification.from_pretrained(d).eval(), t.AutoImageProcessor.from_pretrained(d)
    with torch.no_grad():
        pixels = processor(images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt")["pixel_values"]
        ref = model.vit(pixel_values=pixels).last_hidden_state[:, 0].numpy()
    assert _cosines(x, ref).min() >= 0.9999
