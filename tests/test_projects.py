"""Test projects are built from what git tracks, so `make demo` then `make test` in one clone
tests the same files as a fresh clone: the demo's untracked outputs and its params never leak in."""

import subprocess

from conftest import copy_tracked


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo)})


def test_a_test_project_copies_tracked_files_and_the_committed_params_only(tmp_path):
    repo, dest = tmp_path / "clone", tmp_path / "project"
    (repo / "stages").mkdir(parents=True)
    (repo / "params.yaml").write_text("C: auto\n")
    (repo / "stages" / "tune.py").write_text("committed\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text("")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")
    # what `make demo` leaves: params rewritten by `dvc exp run -S`, untracked outputs beside the code
    (repo / "params.yaml").write_text("C: 0.5\n")
    (repo / "dvc.lock").write_text("stages: {}\n")
    (repo / "metrics").mkdir()
    (repo / "metrics" / "accuracy.json").write_text("{}")
    (repo / "stages" / "tune.py").write_text("edited, not committed\n")   # a developer's edit is tested
    dest.mkdir()
    copy_tracked(repo, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["params.yaml", "stages/tune.py"]
    assert (dest / "params.yaml").read_text() == "C: auto\n"
    assert (dest / "stages" / "tune.py").read_text() == "edited, not committed\n"
