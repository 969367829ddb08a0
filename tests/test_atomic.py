"""Writes on a full disk, into a folder's place, and reads of malformed files: one line each,
nothing partial left behind. The full disk is real: the temporary file a write goes to is made a
link to /dev/full, where every write fails with ENOSPC as on a full filesystem."""

import errno
import json
import os

import numpy as np
import pytest

from clipprobe import atomic
from clipprobe.data import downloads
from clipprobe.data.prepare import prepare
from clipprobe.errors import ClipprobeError
from clipprobe.params import DataParams


def _full(path):
    """The temporary `atomic.replace` writes `path` through, pointed at a full disk."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/full", tmp)
    return tmp


def test_a_file_on_a_full_disk_is_one_line_naming_it_and_the_space_it_needs(tmp_path):
    out = tmp_path / "metrics" / "tune.json"
    tmp = _full(out)
    data = {"C": 1.0, "curve": list(range(100))}
    with pytest.raises(atomic.DiskFull) as e:
        atomic.write_json(out, data)
    need = len(json.dumps(data, indent=2)) + 1
    assert str(e.value).startswith(f"{out}: no space left on its disk (") and "\n" not in str(e.value)
    assert f"writing it needs at least {need} bytes" in str(e.value)
    assert not out.exists() and not os.path.lexists(tmp)


def test_a_folder_on_a_full_disk_names_the_folder_and_leaves_the_old_one(tmp_path):
    out = tmp_path / "probe"
    out.mkdir()
    (out / "probe.json").write_text("old")
    with pytest.raises(atomic.DiskFull) as e:
        with atomic.folder(out) as tmp:
            (tmp / "probe.npz").write_bytes(b"x" * 5000)
            _full(tmp / "probe.json")
            atomic.write_json(tmp / "probe.json", {"C": 1.0})
    assert str(e.value).startswith(f"{out}: no space left on its disk (")
    assert "needs more than the 5.0 kB written before it filled" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe"] and (out / "probe.json").read_text() == "old"


def test_a_shard_written_by_pyarrow_on_a_full_disk_is_the_same_one_line(tmp_path):
    from clipprobe.encode import store
    _full(tmp_path / store.shard_name(0))
    with pytest.raises(atomic.DiskFull, match="part-00000.parquet: no space left on its disk"):
        store.write_shard(tmp_path, 0, [0, 1], [0, 1], np.ones((2, 3), np.float32))
    assert not list((tmp_path / store.SHARDS).iterdir())


def test_a_path_that_is_a_folder_says_so(tmp_path):
    (tmp_path / "reports").mkdir()
    with pytest.raises(ClipprobeError) as e:
        atomic.write_text(tmp_path / "reports", "x")
    assert str(e.value) == f"{tmp_path / 'reports'}: is a folder, not a file; give a file path, or remove the folder"


def test_a_malformed_json_file_is_named_as_malformed_not_missing(tmp_path):
    (tmp_path / "tune.json").write_text('{"C": 1.0')
    with pytest.raises(ClipprobeError, match=r"tune.json is malformed, not JSON \(.*\); rerun tune"):
        atomic.read_json(tmp_path / "tune.json", "rerun tune")
    with pytest.raises(ClipprobeError, match=r"other.json is missing; rerun tune"):
        atomic.read_json(tmp_path / "other.json", "rerun tune")


def test_a_full_data_root_in_prepare_is_one_line_naming_it_and_the_param(tmp_path, monkeypatch, fashion_mnist):
    def full(src, dst, *args):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(downloads.shutil, "copyfileobj", full)
    root = tmp_path / "root"
    with pytest.raises(atomic.DiskFull) as e:
        prepare(DataParams(name="fashion-mnist", root=str(root), limit_per_class=1), tmp_path / "prepared")
    assert str(e.value).startswith(f"{root}: no space left on its disk (") and "data.root" in str(e.value)
    assert not [p for p in root.rglob("*") if p.is_file() and ".lock" not in p.name]   # no partial copy
    assert not (tmp_path / "prepared").exists()


def test_extraction_checks_the_space_its_features_need_before_it_starts(tmp_path, image_folder, monkeypatch):
    import torch
    from conftest import TINY

    from clipprobe.encode import encoders, extract
    prepared = tmp_path / "prepared"
    prepare(DataParams(name=str(image_folder)), prepared)
    enc = encoders.load_encoder(TINY, "random")
    monkeypatch.setattr(atomic, "free_space", lambda path: 1000)
    cpu = torch.device("cpu")
    spec = extract.spec(enc, TINY, "random", batch_size=4, shard_size=7, device=cpu, dtype=torch.float32)
    with pytest.raises(atomic.DiskFull) as e:
        extract.extract_split(enc, prepared, "train", tmp_path / "scratch", spec, "fp", device=cpu,
                              dtype=torch.float32, workers=0)
    assert str(e.value).startswith(f"{tmp_path / 'scratch'}: no space left on its disk (1.0 kB free); "
                                   f"writing it needs at least {18 * 32 * 4 / 1000:.1f} kB")


def test_a_stage_on_a_full_disk_prints_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    """The inputs stage's script, run as DVC runs it (stage.run), its first output on a full disk."""
    import runpy
    import shutil

    import yaml
    from conftest import REPO, TINY, tracked_params
    (tmp_path / "stages").mkdir()
    shutil.copy(REPO / "stages" / "inputs.py", tmp_path / "stages" / "inputs.py")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    params = yaml.safe_load(tracked_params())
    params["model"].update(name=TINY, weights="random")
    params["data"]["name"] = "fashion-mnist"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _full(tmp_path / "inputs" / "data.tsv")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(tmp_path / "stages" / "inputs.py"), run_name="__main__")
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1
    assert err.startswith("error: inputs/data.tsv: no space left on its disk (") and "writing it needs at least" in err
    assert not (tmp_path / "inputs" / "data.tsv").exists() and not (tmp_path / "inputs" / "model.json").exists()
