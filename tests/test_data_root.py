"""The shared data root: `auto` is the user's cache directory, and concurrent downloads of one
dataset happen once, never leaving a half copy where a reader looks."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import tracked_params

from clipprobe.data import root as data_root
from clipprobe.data.prepare import prepare
from clipprobe.params import DataParams

# A fake torchvision-style dataset: opening it without download fails unless complete; a
# download writes five parts slowly, then a completion marker, and logs itself.
FAKE = """
import sys, time
from pathlib import Path
from clipprobe.data import root as data_root

root, log, delay = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])

def build(d, download):
    files = d / "fake"
    if not download:
        if not (files / "done").is_file():
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        return sorted(p.name for p in files.iterdir())
    with open(log, "a") as f:
        f.write("download\\n")
    files.mkdir()
    for i in range(5):
        (files / f"part{i}").write_text("x")
        time.sleep(delay)
    (files / "done").write_text("")

print(" ".join(data_root.fetch(root, "fake", build)))
"""
COMPLETE = "done part0 part1 part2 part3 part4"


def _start(tmp_path, delay):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "root"), str(tmp_path / "log"),
                             str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_download_in_progress(tmp_path, proc):
    deadline = time.monotonic() + 60
    while not list((tmp_path / "root").glob(".partial-fake-*/fake/part0")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)


def test_auto_is_the_users_cache_directory_and_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root.resolve("auto") == tmp_path / "xdg" / "clipprobe" / "data"
    assert data_root.resolve("some/dir") == Path("some/dir")
    assert DataParams().root == "auto"
    assert yaml.safe_load(tracked_params())["data"]["root"] == "auto"


def test_prepare_downloads_into_the_shared_root_by_default(monkeypatch, tmp_path, fashion_mnist):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    info = prepare(DataParams(name="fashion-mnist", limit_per_class=1), tmp_path / "prepared")
    shared = tmp_path / "xdg" / "clipprobe" / "data"
    assert info["root"] == str(shared)
    assert (shared / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert not list(shared.glob(".partial-*"))


def test_a_second_process_waits_for_the_download_in_progress_and_does_not_repeat_it(tmp_path):
    first = _start(tmp_path, delay=0.2)
    _wait_for_download_in_progress(tmp_path, first)
    second = _start(tmp_path, delay=0.2)
    out1, _ = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == second.returncode == 0, err2
    assert out1.strip() == out2.strip() == COMPLETE
    assert "waiting for another process preparing fake" in err2
    assert (tmp_path / "log").read_text() == "download\n"
    assert not list((tmp_path / "root").glob(".partial-*"))


def test_a_killed_download_leaves_no_partial_copy_and_the_next_one_completes(tmp_path):
    killed = _start(tmp_path, delay=5)
    _wait_for_download_in_progress(tmp_path, killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "root" / "fake").exists()     # readers never see the half download
    again = _start(tmp_path, delay=0)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.strip() == COMPLETE and "waiting" not in err   # the killed holder's lock was released
    assert (tmp_path / "log").read_text() == "download\ndownload\n"
    assert not list((tmp_path / "root").glob(".partial-*"))
