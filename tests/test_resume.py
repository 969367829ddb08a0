"""Crashes and reruns: a killed extraction resumes and ends byte-identical to an uninterrupted one."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from clipprobe import datasets, encoders, features, store
from clipprobe.params import DataParams
from conftest import TINY, make_project, run

SETTINGS = {"model": {"name": "ViT-B/32", "weights": "random"},
            "data": {"limit_per_class": 5}, "extract": {"batch_size": 5, "shard_size": 5}}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _kill_after_first_shard(dest, env):
    proc = subprocess.Popen(["dvc", "repro", "extract"], cwd=dest, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = dest / ".cache" / "clipprobe" / "extract"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(True for _ in scratch.glob("*/shards/part-00000.parquet")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "extraction ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)     # dvc and the stage it runs, mid-extraction
    proc.wait()


def test_sigkilled_extract_resumes_byte_identical_and_runs_are_deterministic(tmp_path, fashion_mnist):
    ref, env = make_project(tmp_path / "ref", **SETTINGS)
    run(["dvc", "repro"], ref, env)

    dest, env = make_project(tmp_path / "killed", **SETTINGS)
    run(["dvc", "repro", "prepare"], dest, env)
    _kill_after_first_shard(dest, env)
    assert not (dest / "features").exists()             # nothing half-done where tune would read it
    out = run(["dvc", "repro"], dest, env)
    resumed = int(out.split("train: ")[1].split(" images")[0])
    assert resumed < 50                                  # it resumed: not all 50 train images again
    assert _files(dest / "features") == _files(ref / "features")
    assert json.loads((dest / "metrics" / "accuracy.json").read_text()) == \
        json.loads((ref / "metrics" / "accuracy.json").read_text())
    assert not list((dest / ".cache" / "clipprobe" / "extract").iterdir())   # no resume state left


def _fp(encoder, prepared, **change):
    identity = {"model": "m", "arch": encoder.arch, "weights": "random", "weights_id": encoder.weights_id,
                "layer": "projection"}
    settings = {"batch_size": 8, "shard_size": 10, "device": "cpu", "dtype": "torch.float32"}
    for k, v in change.items():
        (identity if k in identity else settings)[k] = v
    return features.split_fingerprint(encoder, prepared, "train", identity, **settings)


def test_fingerprint_covers_everything_features_depend_on(tmp_path, image_folder):
    prepared = tmp_path / "p"
    datasets.prepare(DataParams(name=str(image_folder)), prepared)
    enc = encoders.load_encoder(TINY, "random")
    base = _fp(enc, prepared)
    assert base == _fp(enc, prepared)
    changes = [dict(weights_id="sha256:abc"), dict(layer="pre_projection"), dict(dtype="torch.bfloat16"),
               dict(arch="other"), dict(batch_size=16)]
    assert len({base, *(_fp(enc, prepared, **c) for c in changes)}) == len(changes) + 1
    datasets.prepare(DataParams(name=str(image_folder), limit_per_class=2), prepared)  # other data
    assert _fp(enc, prepared) != base


def test_resume_state_of_another_configuration_is_dropped(tmp_path):
    root = tmp_path / "scratch"
    for name in ("old", "current"):
        (root / name / store.shard_name(0)).parent.mkdir(parents=True)
        (root / name / store.shard_name(0)).write_bytes(b"x")
    features.forget_other_runs({"current"}, root)
    assert [p.name for p in root.iterdir()] == ["current"]


def test_disk_full_while_writing_a_shard_leaves_no_partial_file(tmp_path, image_folder, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    from clipprobe.errors import ClipprobeError

    prepared = tmp_path / "p"
    datasets.prepare(DataParams(name=str(image_folder)), prepared)
    enc = encoders.load_encoder(TINY, "random")
    real = pq.write_table
    calls = []

    def full_disk(table, where, **kw):
        calls.append(where)
        if len(calls) == 2:                      # the second shard hits a full disk midway
            real(table.slice(0, 1), where, **kw)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", full_disk)
    scratch = tmp_path / "scratch"
    kw = dict(batch_size=4, workers=0, shard_size=7, device=torch.device("cpu"), dtype=torch.float32,
              identity={}, fp="x")
    with pytest.raises(ClipprobeError, match=r"part-00001.parquet: cannot write \(No space left on device\)"):
        features.extract_split(enc, prepared, "train", scratch, **kw)
    assert sorted(p.name for p in (scratch / store.SHARDS).iterdir()) == ["part-00000.parquet"]
    monkeypatch.setattr(pq, "write_table", real)
    manifest = features.extract_split(enc, prepared, "train", scratch, **kw)   # space freed: resume
    assert manifest["rows"] == 18 and len(manifest["shards"]) == 3
