"""Crashes and reruns: a killed extraction resumes and ends byte-identical to an uninterrupted one."""

import dataclasses
import json
import os
import signal
import subprocess
import time

import pytest
import torch
from conftest import TINY, make_project, run

from clipprobe.data.prepare import prepare
from clipprobe.encode import encoders, extract, store
from clipprobe.params import DataParams

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
    run(["dvc", "repro", "evaluate"], ref, env)   # through the probe's metrics: what extraction feeds

    dest, env = make_project(tmp_path / "killed", **SETTINGS)
    run(["dvc", "repro", "prepare"], dest, env)
    _kill_after_first_shard(dest, env)
    assert not (dest / "features").exists()             # nothing half-done where tune would read it
    out = run(["dvc", "repro", "evaluate"], dest, env)
    resumed = int(out.split("train: ")[1].split(" images")[0])
    assert resumed < 50                                  # it resumed: not all 50 train images again
    assert _files(dest / "features") == _files(ref / "features")
    assert json.loads((dest / "metrics" / "accuracy.json").read_text()) == \
        json.loads((ref / "metrics" / "accuracy.json").read_text())
    assert not list((dest / ".cache" / "clipprobe" / "extract").iterdir())   # no resume state left


def test_fingerprint_covers_the_data_and_every_field_of_the_spec_the_stage_builds(tmp_path, image_folder):
    prepared = tmp_path / "p"
    prepare(DataParams(name=str(image_folder)), prepared)
    enc = encoders.load_encoder(TINY, "random")
    args = dict(model=TINY, weights="random", batch_size=8, shard_size=10,
                device=torch.device("cpu"), dtype=torch.float32)
    base = extract.spec(enc, **args)

    def fp(spec):
        return extract.split_fingerprint(spec, prepared, "train")

    assert fp(base) == fp(extract.spec(enc, **args))
    for f in dataclasses.fields(base):   # every field the spec has moves the fingerprint
        value = getattr(base, f.name)
        assert fp(dataclasses.replace(base, **{f.name: value + 1 if isinstance(value, int) else f"{value}~"})) \
            != fp(base), f.name
    for change in (dict(model="other"), dict(weights="w2"), dict(batch_size=16),
                   dict(shard_size=20), dict(dtype=torch.bfloat16)):   # every argument reaches the spec
        assert fp(extract.spec(enc, **{**args, **change})) != fp(base), change
    pre = encoders.load_encoder(TINY, "random", "pre_projection")    # and the layer, as the encoder gives it
    assert extract.spec(pre, **args).layer == "pre_projection" and fp(extract.spec(pre, **args)) != fp(base)
    before = fp(base)
    prepare(DataParams(name=str(image_folder), limit_per_class=2), prepared)  # other data
    assert fp(base) != before


def test_resume_state_of_another_configuration_is_dropped(tmp_path):
    root = tmp_path / "scratch"
    for name in ("old", "current"):
        (root / name / store.shard_name(0)).parent.mkdir(parents=True)
        (root / name / store.shard_name(0)).write_bytes(b"x")
    extract.forget_other_runs({"current"}, root)
    assert [p.name for p in root.iterdir()] == ["current"]


def test_disk_full_while_writing_a_shard_leaves_no_partial_file(tmp_path, image_folder, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    from clipprobe.errors import ClipprobeError

    prepared = tmp_path / "p"
    prepare(DataParams(name=str(image_folder)), prepared)
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
    cpu = torch.device("cpu")
    spec = extract.spec(enc, TINY, "random", batch_size=4, shard_size=7, device=cpu,
                         dtype=torch.float32)
    kw = dict(device=cpu, dtype=torch.float32, workers=0)
    with pytest.raises(ClipprobeError, match=r"part-00001.parquet: cannot write \(No space left on device\)"):
        extract.extract_split(enc, prepared, "train", scratch, spec, "x", **kw)
    assert sorted(p.name for p in (scratch / store.SHARDS).iterdir()) == ["part-00000.parquet"]
    monkeypatch.setattr(pq, "write_table", real)
    manifest = extract.extract_split(enc, prepared, "train", scratch, spec, "x", **kw)   # space freed: resume
    assert manifest["rows"] == 18 and len(manifest["shards"]) == 3
