import time

import pytest
import torch
from conftest import TINY

from clipprobe import devices
from clipprobe.encode import encoders, openclip, towers
from clipprobe.errors import ClipprobeError


@pytest.mark.parametrize("name, arch", [("ViT-B/32", "ViT-B-32"), ("ViT-B-32", "ViT-B-32"), ("RN50", "RN50"),
                                        ("ViT-L/14@336px", "ViT-L-14-336"), ("ViT-B/16", "ViT-B-16")])
def test_openai_and_open_clip_spellings(name, arch):
    assert openclip.resolve_name(name) == arch


def test_unknown_model_name():
    with pytest.raises(ClipprobeError, match="model.name=ViT-Q/99: unknown architecture"):
        openclip.resolve_name("ViT-Q/99")


def test_real_vit_b32_architecture_untrained():
    enc = encoders.load_encoder("ViT-B/32", "random")
    assert enc.arch == "ViT-B-32" and enc.embed_dim == 512
    assert not enc.visual.training and not any(p.requires_grad for p in enc.visual.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert enc.visual(x).shape == (2, 512)


def test_random_weights_are_seeded():
    a, b = encoders.load_encoder(TINY, "random"), encoders.load_encoder(TINY, "random")
    for pa, pb in zip(a.visual.parameters(), b.visual.parameters()):
        assert torch.equal(pa, pb)
    assert a.weights_id == "random(seed=0)"


def test_state_dict_checkpoint_path(tmp_path):
    import open_clip
    openclip.resolve_name(TINY)
    torch.manual_seed(123)
    ref = open_clip.create_model("tiny-clip")
    ckpt = tmp_path / "tiny.pt"
    torch.save(ref.state_dict(), ckpt)
    enc = encoders.load_encoder(TINY, str(ckpt))
    assert torch.equal(enc.visual.conv1.weight, ref.visual.conv1.weight)
    assert enc.weights_id.startswith("sha256:")


def test_checkpoint_of_another_architecture_names_both(tmp_path):
    import open_clip
    ckpt = tmp_path / "rn.pt"
    openclip.resolve_name(TINY)
    other = open_clip.create_model("tiny-clip", force_image_size=64)
    torch.save(other.state_dict(), ckpt)
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(TINY, str(ckpt))
    assert "rn.pt" in str(e.value) and "tiny-clip" in str(e.value) and "size mismatch" in str(e.value)


def test_missing_and_non_checkpoint_weights(tmp_path):
    with pytest.raises(ClipprobeError, match="file not found"):
        encoders.load_encoder(TINY, str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(ClipprobeError, match="not a readable checkpoint"):
        encoders.load_encoder(TINY, str(junk))


def test_unknown_pretrained_tag():
    with pytest.raises(ClipprobeError, match="not a pretrained tag of ViT-B-32.*laion2b_s34b_b79k"):
        encoders.load_encoder("ViT-B/32", "laion5000")


def test_openai_weights_offline_fail_fast_with_guidance(tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder("ViT-B/32", "openai")
    assert time.monotonic() - start < 30
    msg = str(e.value)
    assert "not cached" in msg and "model.weights=random" in msg and str(tmp_path / "hf") in msg


def test_device_and_precision_checks():
    assert devices.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ClipprobeError, match="extract.device=cuda:0"):
            devices.pick_device("cuda:0")
    with pytest.raises(ClipprobeError, match="fp16"):
        devices.pick_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native_bf16)
    assert devices.pick_precision("auto", torch.device("cpu")) == expected
    assert devices.pick_precision("auto", torch.device("cuda")) == torch.float16
    assert devices.pick_precision("fp32", torch.device("cpu")) == torch.float32
    assert devices.pick_precision("bf16", torch.device("cpu")) == torch.bfloat16


def test_place_casts_the_tower_weights():
    enc = towers.place(encoders.load_encoder(TINY, "random"), torch.device("cpu"), torch.bfloat16)
    assert {p.dtype for p in enc.visual.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        assert enc.visual(torch.randn(2, 3, 32, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("text, expected", [
    ('{"embed_dim": 32, "vision_cfg": {', "not valid JSON"),
    ('{"embed_dim": 32, "vision_cfg": {"image_size": 32}}', "lacks text_cfg"),
    ('[1, 2]', "lacks embed_dim, vision_cfg, text_cfg"),
])
def test_malformed_or_incomplete_model_config_is_one_line(tmp_path, text, expected):
    cfg = tmp_path / "mine.json"
    cfg.write_text(text)
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(str(cfg), "random")
    assert expected in str(e.value) and str(cfg) in str(e.value) and "\n" not in str(e.value)


def test_model_config_open_clip_cannot_build_is_one_line(tmp_path):
    cfg = tmp_path / "broken-values.json"
    cfg.write_text('{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": "two", "width": 64, '
                   '"patch_size": 8}, "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, '
                   '"heads": 2, "layers": 1}}')
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(str(cfg), "random")
    assert "cannot build a model from this config" in str(e.value) and "\n" not in str(e.value)


def test_zip_with_code_folder_that_is_not_torchscript_is_one_line(tmp_path):
    import zipfile
    fake = tmp_path / "fake.pt"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("fake/code/__torch__.py", "not torchscript")
        z.writestr("fake/data.pkl", b"junk")
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(TINY, str(fake))
    msg = str(e.value)
    assert "model.weights=" in msg and "fake.pt" in msg and "torch.jit.load cannot read it" in msg
    assert "\n" not in msg
