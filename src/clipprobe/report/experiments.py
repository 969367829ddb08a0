"""Finished DVC experiments as `leaderboard.Experiment` records, through DVC's Python API."""

from __future__ import annotations

from pathlib import PurePosixPath

from clipprobe.errors import ClipprobeError
from clipprobe.report.leaderboard import Experiment

METRICS_FILES = ("accuracy.json", "zeroshot.json", "fewshot.json")


def _metrics(collected: dict) -> tuple[dict, dict]:
    """File name -> content of the metrics files the leaderboard reads (those under metrics/ first),
    and file name -> its path, for those present but malformed (DVC could not parse them)."""
    out, malformed = {}, {}
    for path, result in sorted(collected.items(), key=lambda kv: not kv[0].startswith("metrics/")):
        name = PurePosixPath(path).name
        if name not in METRICS_FILES or name in out:
            continue
        if isinstance(result.get("data"), dict):
            out[name] = result["data"]
        elif result.get("error") is not None and not isinstance(result["error"], FileNotFoundError):
            malformed.setdefault(name, path)   # DVC could not parse it (JSONFileCorruptedError, ...)
    return out, malformed


def collect(repo: str | None = None, names: list[str] | None = None,
            baseline: str | None = None) -> tuple[list[Experiment], int]:
    """The finished experiments of `repo` (default: the DVC project around the current directory),
    newest first: all of them, those named in `names` (names or commit SHA prefixes), or those of
    the `baseline` commit; and how many more are queued, running or failed."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        r = Repo(repo)
    except NotDvcRepoError:
        raise ClipprobeError(f"{repo or 'the current directory'} is not inside a DVC project; run "
                             "clipprobe report from the project, or pass --repo") from None
    with r:
        try:
            revs = [baseline] if baseline else list(r.experiments.ls(all_commits=True))
            states = r.experiments.show(revs=revs, num=1, hide_workspace=True) if revs else []
        except DvcException as e:
            raise ClipprobeError(f"--baseline {baseline}: {e}") from None
        found, unfinished = [], 0
        for base in states:
            base_name = base.name or base.rev[:7]
            for exp_range in base.experiments or []:
                state = exp_range.revs[0]
                status = exp_range.executor.state if exp_range.executor else "success"
                if status != "success" or state.error or state.data is None:
                    unfinished += 1
                    continue
                params = state.data.params.get("params.yaml", {}).get("data") or {}
                metrics, malformed = _metrics(state.data.metrics)
                found.append(Experiment(name=exp_range.name or state.name or state.rev[:7], rev=state.rev,
                                        baseline=base_name, timestamp=state.data.timestamp, params=params,
                                        metrics=metrics, malformed=malformed))
    found.sort(key=lambda e: e.timestamp.timestamp() if e.timestamp else 0.0, reverse=True)
    if names:
        missing = [n for n in names if not any(_named(e, n) for e in found)]
        if missing:
            raise ClipprobeError(f"--exp {missing[0]}: no finished experiment of that name or commit; "
                                 "`dvc exp show` lists them")
        found = [e for e in found if any(_named(e, n) for n in names)]
    return found, unfinished


def _named(e: Experiment, name: str) -> bool:
    """Whether `name` is the experiment's name or a prefix (4 characters or more) of its commit."""
    return e.name == name or (len(name) >= 4 and e.rev.startswith(name))
