import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "tiny-clip.json")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fashion_mnist():
    assert FASHION_MNIST.is_dir(), ("Debian's dataset-fashion-mnist is not installed; `make test` "
                                    "installs it when run as root")
    return FASHION_MNIST


def make_image_folder(root: Path, classes=("cat", "dog", "owl"), n_train=6, n_test=3, size=40, mode="RGB"):
    """An ImageFolder tree whose classes differ in colour, so a probe can learn them."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.zeros((size, size, 3), np.uint8)
                base[..., k % 3] = 160
                noise = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img = Image.fromarray(base + noise).convert(mode)
                img.save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "folder")


def run(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def tracked_files(repo: Path = REPO) -> list[str]:
    """The files git tracks (its index): what a clone holds. Not what a run in this checkout left
    untracked (`make demo`'s metrics/, dvc.lock, plots/), which a test project must not inherit."""
    return subprocess.run(["git", "ls-files", "--cached", "-z"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.split("\0")[:-1]


def tracked_params(repo: Path = REPO) -> str:
    """params.yaml as git's index holds it: `dvc exp run -S` (`make demo`) rewrites the working copy."""
    return subprocess.run(["git", "show", ":params.yaml"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def copy_tracked(repo: Path, dest: Path) -> None:
    """The tracked files of `repo` (tests excluded) into `dest`, as the working tree holds them (so
    uncommitted edits are tested; a new file needs `git add`), params.yaml as the index holds it."""
    for f in tracked_files(repo):
        if (repo / f).is_file() and not f.startswith("tests/"):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / f, dest / f)
    (dest / "params.yaml").write_text(tracked_params(repo))


def make_project(dest: Path, **overrides):
    """A git+DVC copy of this repo's tracked files (tests excluded, see `copy_tracked`) with params
    overridden per section, on offline Fashion-MNIST by default; returns (path, env for subprocesses)."""
    copy_tracked(REPO, dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"].update(name="fashion-mnist", limit_per_class=12)
    params["extract"].update(batch_size=32, shard_size=50)
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1",
           "XDG_CACHE_HOME": str(dest.parent / "xdg-cache")}   # data.root: auto, never the user's cache
    run(["git", "init", "-q"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-qm", "init"], dest, env)
    return dest, env


def assert_same_features(a: Path, b: Path):
    """Two extractions of a split hold the same manifest, shards, ids and row order, and
    embeddings equal within float tolerance."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma == mb
    for shard in ma["shards"]:
        ta, tb = pq.read_table(a / shard), pq.read_table(b / shard)
        assert ta.schema == tb.schema
        for col in set(ta.column_names) - {"embedding"}:
            assert ta.column(col).equals(tb.column(col)), col
        ea, eb = (np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in (ta, tb))
        np.testing.assert_allclose(ea, eb, rtol=1e-4, atol=1e-5)


def make_hf_text_model(dest: Path, family: str = "clip", context: int = 64) -> Path:
    """A tiny transformers CLIP or SigLIP (random weights, seeded) saved as a local model directory
    with its image processor and a character-level tokenizer (any ASCII prompt tokenizes), shaped as
    the hub's are: CLIP's begins with a start token and pads with its end token; SigLIP's ends with
    `</s>`, pads with `<pad>`, and gives no attention mask."""
    import string

    import torch
    import transformers as t
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    chars = [c for c in string.printable if not c.isspace()]
    specials = ["<pad>", "<unk>", "<bos>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + chars + [f"##{c}" for c in chars])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    clip = family == "clip"
    single = "<bos> $A </s>" if clip else "$A </s>"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(s, vocab[s]) for s in ("<bos>", "</s>") if s in single])
    tokenizer = t.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>",
                                          pad_token="</s>" if clip else "<pad>", model_max_length=context,
                                          **({"bos_token": "<bos>"} if clip else {"model_input_names": ["input_ids"]}))
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = dict(tower, vocab_size=len(vocab), max_position_embeddings=context, eos_token_id=vocab["</s>"],
                pad_token_id=vocab["</s>" if clip else "<pad>"], bos_token_id=vocab["<bos>"] if clip else None)
    torch.manual_seed(0)
    if clip:
        model = t.CLIPModel(t.CLIPConfig(text_config=text, vision_config=dict(tower, image_size=32, patch_size=8),
                                         projection_dim=24))
        processor = t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = t.SiglipModel(t.SiglipConfig(text_config=dict(text, projection_size=32),
                                             vision_config=dict(tower, image_size=32, patch_size=8)))
        processor = t.SiglipImageProcessor(size={"height": 32, "width": 32})
    for part in (model, tokenizer, processor):
        part.save_pretrained(dest)
    return dest
