"""Bad model input, one line, before heavy work, for every model source: names and tags (checked by
the inputs stage, before prepare), offline weights, checkpoints of another architecture or holding
NaN, models too large for memory, a missing transformers, a layer the model cannot give."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY
from PIL import Image

from clipprobe.data import inputs
from clipprobe.encode import catalog, encoders, names, sizing
from clipprobe.errors import ClipprobeError
from clipprobe.params import ModelParams


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """No weights cached anywhere (Hugging Face, torch hub, ~/.cache/clip), and no network (HF_HUB_OFFLINE)."""
    import huggingface_hub.constants
    import platformdirs
    monkeypatch.setenv("XDG_CACHE_HOME", str(platformdirs.user_cache_path()))   # the catalogs stay where they are
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "hf"


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _hf_vit(d, **config):
    import transformers as t
    torch.manual_seed(0)
    cfg = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
           "image_size": 32, "patch_size": 8, **config}
    model = t.ViTModel(t.ViTConfig(**cfg))
    t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return model


# ---------------------------------------------------------------- found by the inputs stage

@pytest.mark.parametrize("name, weights, expected", [
    ("ViT-B/33", "random", "model.name=ViT-B/33: unknown architecture; try one of ViT-B-32"),
    ("vit_small_patch16_224", "random", "for timm's model write model.name=timm:vit_small_patch16_224"),
    ("ViT-B/32", "laion2b_s34b_b79k", "model.weights=laion2b_s34b_b79k: ViT-B-32 weights (laion2b_s34b_b79k) are not cached"),
    ("ViT-B/32", "pretrained", "model.weights=pretrained: ViT-B-32 weights (openai) are not cached"),
    ("ViT-B/32", "laion5000", "not a pretrained tag of ViT-B-32 (tags: pretrained, openai, laion400m_e31"),
    ("timm:vit_smal_patch16_224", "random", "not a timm model; closest: vit_small_patch16_224"),
    ("timm:vit_base_patch14_dinov2.lvd142m", "random",
     "the pretrained tag goes in model.weights: model.name=timm:vit_base_patch14_dinov2, model.weights=lvd142m"),
    ("timm:vit_base_patch14_dinov2", "lvd999", "not a pretrained tag of vit_base_patch14_dinov2 (tags: pretrained, lvd142m)"),
    ("timm:vit_base_patch14_dinov2", "pretrained", "timm's vit_base_patch14_dinov2.lvd142m weights are not cached"),
    ("timm:", "random", "give a model after the prefix"),
    ("hf:facebook/dinov2-small", "pretrained", "model.name=hf:facebook/dinov2-small: the repo's files are not cached"),
    ("hf:/no/such/dir", "random", "model.name=hf:/no/such/dir: no such directory"),
    ("hf:facebook/dinov2-small", "lvd142m", "a Hugging Face model takes pretrained (its own weights) or random"),
])
def test_the_inputs_stage_stops_on_a_bad_model_name_or_unreachable_weights_in_one_line(
        name, weights, expected, empty_hub):
    with pytest.raises(ClipprobeError) as e:
        inputs.model_record(ModelParams(name=name, weights=weights))
    assert expected in _one_line(e)


def test_offline_weights_name_the_cache_folder_to_fill(empty_hub):
    with pytest.raises(ClipprobeError) as e:
        names.check("timm:test_vit", "pretrained")
    default = catalog.get("timm")["pretrained"]["test_vit"]["default"]
    assert str(empty_hub / f"models--timm--test_vit.{default}") in _one_line(e) and "model.weights=random" in str(e.value)
    with pytest.raises(ClipprobeError) as e:
        names.check("hf:facebook/dinov2-small", "random")
    assert str(empty_hub / "models--facebook--dinov2-small") in _one_line(e) and "save_pretrained" in str(e.value)


def test_without_network_the_check_gives_up_within_seconds_not_after_retries(empty_hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    tried = []

    def unreachable(address, timeout):
        tried.append((address, timeout))
        raise OSError("network is unreachable")
    monkeypatch.setattr(names.socket, "create_connection", unreachable)
    with pytest.raises(ClipprobeError, match="not cached .* and there is no network"):
        names.check("hf:facebook/dinov2-small", "pretrained")
    assert tried and all(t <= 3 for _, t in tried) and len(tried) <= 2   # two hosts at most, 3 s each


def test_cached_hub_weights_pass_and_their_revision_reruns_extract_when_it_changes(empty_hub):
    default = catalog.get("timm")["pretrained"]["test_vit"]["default"]
    repo = empty_hub / f"models--timm--test_vit.{default}"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    record = inputs.model_record(ModelParams(name="timm:test_vit", weights="pretrained"))
    assert record == {"name": "timm:test_vit", "weights": "pretrained", "weights_revision": "abc123"}


def test_every_file_of_a_hugging_face_model_directory_is_hashed(tmp_path):
    d = tmp_path / "vit"
    _hf_vit(d).save_pretrained(d)
    record = inputs.model_record(ModelParams(name=f"hf:{d}", weights="pretrained"), tmp_path / "sha.json")
    assert set(record["name_files"]) == {"config.json", "model.safetensors", "preprocessor_config.json"}
    _hf_vit(d, num_hidden_layers=1).save_pretrained(d)   # other weights saved in place
    again = inputs.model_record(ModelParams(name=f"hf:{d}", weights="pretrained"), tmp_path / "sha.json")
    assert again["name_files"]["model.safetensors"] != record["name_files"]["model.safetensors"]


def test_a_hugging_face_directory_without_its_files_says_what_is_missing(tmp_path):
    d = tmp_path / "half"
    d.mkdir()
    (d / "config.json").write_text("{}")
    with pytest.raises(ClipprobeError) as e:
        names.check(f"hf:{d}", "pretrained")
    assert "lacks preprocessor_config.json, model.safetensors or pytorch_model.bin" in _one_line(e)


def test_the_names_check_builds_the_catalog_in_a_child_and_imports_no_torch(tmp_path):
    code = ("import sys; from clipprobe.encode import names; names.check('timm:test_vit', 'random'); "
            "print(sorted({'torch', 'timm'} & set(sys.modules)))")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert [p.name.split("-")[0] for p in (tmp_path / "cache" / "clipprobe" / "catalogs").iterdir()] == ["timm"]


# ---------------------------------------------------------------- found by the loaders

def test_a_timm_checkpoint_of_another_architecture_names_the_first_mismatching_key_and_shapes(tmp_path):
    import timm
    ckpt = tmp_path / "wide.pth"
    torch.save(timm.create_model("test_vit", embed_dim=48).state_dict(), ckpt)
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder("timm:test_vit", str(ckpt))
    msg = _one_line(e)
    assert "wide.pth does not fit model.name=timm:test_vit: size mismatch for cls_token: [1, 1, 48] in the " \
           "checkpoint, [1, 1, 64] in timm's test_vit" in msg


@pytest.mark.parametrize("source", ["open_clip", "timm", "hf"])
def test_weights_holding_nan_are_refused_naming_the_first_bad_tensor(source, tmp_path):
    if source == "open_clip":
        import open_clip
        name, ckpt = TINY, tmp_path / "nan.pt"
        from clipprobe.encode import openclip
        openclip.resolve_name(TINY)
        state = open_clip.create_model("tiny-clip").state_dict()
    elif source == "timm":
        import timm
        name, ckpt = "timm:test_vit", tmp_path / "nan.pth"
        state = timm.create_model("test_vit").state_dict()
    else:
        d = tmp_path / "vit"
        model = _hf_vit(d)
        name, ckpt, state = f"hf:{d}", None, model.state_dict()
    keys = [k for k, v in state.items() if v.is_floating_point()]
    bad, later = keys[len(keys) // 2], keys[-1]
    state[bad][..., 0] = float("nan")
    state[later][..., 0] = float("inf")
    if ckpt is None:
        model.save_pretrained(d)
        weights = "pretrained"
    else:
        torch.save(state, ckpt)
        weights = str(ckpt)
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(name, weights)
    assert f"tensor {bad.removeprefix('vit.')} holds" in _one_line(e) and "NaN or inf" in str(e.value)


def test_hugging_face_weights_that_leave_part_of_the_model_untrained_are_refused(tmp_path):
    d = tmp_path / "vit"
    _hf_vit(d).save_pretrained(d)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))   # one layer more than saved
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(f"hf:{d}", "pretrained")
    msg = _one_line(e)    # the third layer's 16 tensors (their names vary with the transformers version)
    assert "its weights lack 16 tensor(s) of ViTModel (e.g. " in msg and "2." in msg.split("(e.g. ")[1]


def test_an_open_clip_config_too_large_for_memory_is_refused_from_its_parameter_count(tmp_path):
    cfg = json.loads(open(TINY).read())
    cfg["vision_cfg"].update(width=16384, layers=96, head_width=128)   # ~310e9 parameters: 1.2 TB in fp32
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(cfg))
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(str(huge), "random")
    msg = _one_line(e)
    assert msg.startswith(f"model.name={huge}: ") and " parameters need " in msg and "GB of memory available" in msg
    assert sizing.parameters(lambda: _meta_open_clip(huge)) > 3e11


def _meta_open_clip(path):
    import open_clip
    open_clip.add_model_config(path)
    return open_clip.create_model(path.stem, device="meta")


def test_a_hugging_face_config_too_large_for_memory_is_refused_before_allocating(tmp_path):
    import transformers as t
    d = tmp_path / "huge"
    t.Dinov2Config(hidden_size=16384, num_hidden_layers=96, num_attention_heads=128,
                   intermediate_size=65536).save_pretrained(d)
    t.BitImageProcessor().save_pretrained(d)
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(f"hf:{d}", "random")
    assert " parameters need " in _one_line(e) and f"model.name=hf:{d}" in str(e.value)


def test_a_timm_model_is_sized_before_it_is_built(monkeypatch):
    monkeypatch.setattr(sizing, "available_ram", lambda: 10**6)   # 1 MB left
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder("timm:test_vit", "random")
    assert _one_line(e).startswith("model.name=timm:test_vit: 306,240 parameters need 1.2 MB in fp32, more than "
                                   "the 1.0 MB of memory available")


def test_a_model_too_large_for_the_gpus_free_memory_is_refused_before_it_moves(monkeypatch):
    from clipprobe.encode import towers
    encoder = encoders.load_encoder("timm:test_vit", "random")        # 306,240 weights: 0.6 MB in fp16
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (500_000, 8 * 10**9))
    with pytest.raises(ClipprobeError) as e:
        towers.place(encoder, torch.device("cuda:0"), torch.float16)
    assert _one_line(e) == ("model.name (timm:test_vit): its weights need 612.5 kB in float16 on cuda:0, more than "
                            "the 500.0 kB free of its 8.0 GB; choose a smaller model or another GPU (extract.device), "
                            "or free that GPU's memory")
    assert next(encoder.visual.parameters()).device.type == "cpu"


def test_a_batch_too_large_for_device_memory_names_extract_batch_size():
    from clipprobe.encode import extract, preprocess
    encoder = encoders.load_encoder("timm:test_vit", "random")

    def out_of_memory(x):   # what torch raises when a batch's activations do not fit
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    encoder.visual.forward = out_of_memory
    prep = preprocess.for_model(encoder.preprocess)
    images = [(prep.host(Image.new("RGB", (40, 40))), row) for row in range(4)]
    loader = torch.utils.data.DataLoader(images, batch_size=4, collate_fn=preprocess.collate_by_shape)
    with pytest.raises(ClipprobeError) as e:
        extract.encode_batches(encoder, loader, prep, torch.device("cpu"), torch.float32)
    assert _one_line(e) == ("extract.batch_size=4: timm:test_vit ran out of cpu memory on a batch this size; "
                            "lower extract.batch_size")


def test_hugging_face_models_without_transformers_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)   # `import transformers` raises ImportError
    monkeypatch.setattr(names.importlib.util, "find_spec", lambda n: None if n == "transformers" else object())
    for check in (lambda: names.check("hf:facebook/dinov2-small", "pretrained"),
                  lambda: encoders.load_encoder("hf:facebook/dinov2-small", "pretrained")):
        with pytest.raises(ClipprobeError) as e:
            check()
        assert "need transformers; pip install 'clipprobe[hf]'" in _one_line(e)


@pytest.mark.parametrize("name, layer, expected", [
    ("timm:test_vit", "pre_projection", "extract.layer=pre_projection: timm models give pre_logits (auto) or cls_avgpatch"),
    ("timm:test_resnet", "cls_avgpatch", "extract.layer=cls_avgpatch: timm:test_resnet has no class token"),
    (TINY, "pre_logits", "extract.layer=pre_logits: open_clip models give projection (encode_image), pre_projection or "
                         "cls_avgpatch"),
    ("RN50", "cls_avgpatch", "extract.layer=cls_avgpatch: this ModifiedResNet image tower does not pool by a class "
                             "token"),
])
def test_a_layer_the_model_cannot_give_is_one_line(name, layer, expected):
    with pytest.raises(ClipprobeError) as e:
        encoders.load_encoder(name, "random", layer)
    assert expected in _one_line(e)


def test_models_without_a_text_tower_say_so_and_open_clip_models_have_one():
    assert encoders.no_text_tower("timm:test_vit") == "timm models are image towers only"   # hf: test_hf_text_towers
    assert encoders.no_text_tower("ViT-B/32") is None and encoders.no_text_tower(TINY) is None


def test_the_inputs_stage_script_stops_before_prepare_with_one_line(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(REPO / "stages", project / "stages")
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / f, project / f)
    params = (project / "params.yaml").read_text().replace("name: ViT-B/32", "name: timm:convnext_bsae", 1)
    (project / "params.yaml").write_text(params.replace("weights: openai", "weights: random", 1))
    r = subprocess.run([sys.executable, "stages/inputs.py"], cwd=project, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and not (project / "inputs").exists()
    assert r.stderr.startswith("error: model.name=timm:convnext_bsae: not a timm model; closest: convnext_base")


def test_a_librarys_error_quoted_in_one_line_carries_no_terminal_escapes():
    from clipprobe.encode import checkpoint
    e = ValueError("Weights only load failed. \x1b[1mDo those steps only if you trust the source\x1b[0m.  More")
    assert checkpoint.first_line(e) == "ValueError: Weights only load failed. Do those steps only if you trust the source."
