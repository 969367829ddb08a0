"""Finished DVC experiments as `leaderboard.Experiment` records, through DVC's Python API.

Params come from `Repo.experiments.show`; the records (results/*.json) and predictions are read from
each experiment's git commit (they are `cache: false` outputs, committed with it); the fingerprint of
its own test features from DVC's cache, through the `features` output's hash in its dvc.lock, and the
hash of its prepared data from that dvc.lock (no cache needed)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from clipprobe.errors import ClipprobeError
from clipprobe.report.leaderboard import STAGES, Experiment


def _records(fs) -> dict:
    out = {}
    for stage in STAGES:
        path = f"results/{stage}.json"
        if fs.exists(path):
            try:
                out[stage] = json.loads(fs.read_text(path))
            except ValueError:
                raise ClipprobeError(f"{path} at this experiment's commit is not valid JSON; rerun the "
                                     "experiment") from None
    return out


def _test_features(repo, outs: dict) -> str | None:
    """The fingerprint of the experiment's test features, from DVC's cache (None where it lacks them)."""
    out = outs.get("features")
    if out is None or not out.hash:
        return None
    try:
        listing = json.loads(Path(repo.cache.local.oid_to_path(out.hash)).read_text())
        entry = next(e for e in listing if e["relpath"] == "test/manifest.json")
        return json.loads(Path(repo.cache.local.oid_to_path(entry["md5"])).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, StopIteration):
        return None


def _open(repo: str | None):
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(repo)
    except NotDvcRepoError:
        raise ClipprobeError(f"{repo or 'the current directory'} is not inside a DVC project; run "
                             "clipprobe from the project, or pass --repo") from None


def collect(repo: str | None = None, names: list[str] | None = None,
            rev: str | None = None) -> tuple[list[Experiment], int]:
    """The finished experiments of `repo` (default: the DVC project around the current directory),
    newest first: all of them, those named in `names` (names or commit SHA prefixes), or those of
    the commit `rev`; and how many more are queued, running or failed."""
    from dvc.exceptions import DvcException

    with _open(repo) as r:
        try:
            revs = [rev] if rev else list(r.experiments.ls(all_commits=True))
            states = r.experiments.show(revs=revs, num=1, hide_workspace=True) if revs else []
        except DvcException as e:
            raise ClipprobeError(f"--rev {rev}: {e}") from None
        found, unfinished = [], 0
        for base in states:
            base_name = base.name or base.rev[:7]
            for exp_range in base.experiments or []:
                state = exp_range.revs[0]
                status = exp_range.executor.state if exp_range.executor else "success"
                if status != "success" or state.error or state.data is None:
                    unfinished += 1
                    continue
                found.append(Experiment(
                    name=exp_range.name or state.name or state.rev[:7], rev=state.rev, baseline=base_name,
                    timestamp=state.data.timestamp, params=state.data.params.get("params.yaml", {}).get("data") or {},
                    records=_records(r.scm.get_fs(state.rev)), features=_test_features(r, state.data.outs or {}),
                    prepared=getattr((state.data.outs or {}).get("data/prepared"), "hash", None)))
    found.sort(key=lambda e: e.timestamp.timestamp() if e.timestamp else 0.0, reverse=True)
    if names:
        missing = [n for n in names if not any(named(e, n) for e in found)]
        if missing:
            raise ClipprobeError(f"--exp {missing[0]}: no finished experiment of that name or commit; "
                                 "`dvc exp show` lists them")
        found = [e for e in found if any(named(e, n) for n in names)]
    return found, unfinished


def named(e: Experiment, name: str) -> bool:
    """Whether `name` is the experiment's name or a prefix (4 characters or more) of its commit."""
    return e.name == name or (len(name) >= 4 and e.rev.startswith(name))


@contextmanager
def predictions(repo: str | None, experiments: list[Experiment]):
    """A loader (experiment name, stage) -> its per-image predictions, read from its commit, with
    the hash of its prepared data (`prepared`) that says which test images they are."""
    from clipprobe.results import read_predictions

    revs, prepared = {e.name: e.rev for e in experiments}, {e.name: e.prepared for e in experiments}
    with _open(repo) as r:
        def load(name: str, stage: str) -> dict:
            path = f"results/{stage}.parquet"
            fs = r.scm.get_fs(revs[name])
            if not fs.exists(path):
                raise ClipprobeError(f"{name}: no {path} at its commit (made by an older clipprobe?); rerun "
                                     "it to compare it pairwise")
            return {**read_predictions(fs.read_bytes(path)), "prepared": prepared[name]}
        yield load
