"""`clipprobe grid`: a models x datasets grid run to completion through DVC's experiment queue.

It drives the queue as a user would (`dvc exp run --queue`, `dvc queue start`, `dvc queue
status`, `dvc queue kill`, `dvc queue logs`), with no runner of its own, and does what a user
watching it would: queue only the cells no experiment of this commit has finished (or holds queued
or running), start the workers, watch them, start them again when none is left while cells wait
(DVC's worker can die, its queue then stays `Queued` with 0 workers for ever), re-queue a cell left
`Running` by a dead worker, name each failed cell with its log's error line, and end with the
leaderboard of the grid's experiments.  A cell is finished when an experiment of HEAD has exactly the
params `dvc exp run -S` would give it: params.yaml with the cell's model, dataset and overrides.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from clipprobe import params
from clipprobe.errors import ClipprobeError

POLL_S = 5.0
DEAD_POLLS = 3    # polls in a row that see no worker while cells wait: the worker is gone
GRACE_S = 30.0    # a worker just started takes seconds to show in `dvc queue status`
MAX_RESTARTS = 5  # restarts in a row with no cell ending: something kills every worker; stop saying so
WAITING = ("Queued", "Running")


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str

    def overrides(self, extra: list[str]) -> list[str]:
        return [f"model.name={self.model}", f"data.name={self.dataset}", *extra]

    def __str__(self) -> str:
        return f"{self.model} x {self.dataset}"


def with_overrides(base: dict, overrides: list[str]) -> dict:
    """params.yaml's mapping with `key.sub=value` overrides applied, each value read as YAML (as
    `dvc exp run -S` does)."""
    out = yaml.safe_load(yaml.safe_dump(base))
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or not key:
            raise ClipprobeError(f"-S {o}: expected key=value, e.g. -S C=0.316 or -S train.max_iter=2000")
        *parents, leaf = key.split(".")
        node = out
        for k in parents:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ClipprobeError(f"-S {o}: {k} is not a section of params.yaml")
        node[leaf] = yaml.safe_load(value)
    return out


def check_cells(root: Path, cells: list[Cell], extra: list[str]) -> dict[Cell, dict]:
    """Each cell's params, validated and its dataset and model names checked (the inputs stage's
    checks, in seconds), before anything is queued: a typo stops the grid, not N experiments."""
    from clipprobe.data.inputs import check_dataset
    from clipprobe.encode import names

    base = params.read(root / "params.yaml")
    out = {}
    for cell in cells:
        raw = with_overrides(base, cell.overrides(extra))
        p = params.parse(raw)
        check_dataset(p.data.name)
        names.check(p.model.name, p.model.weights)
        out[cell] = raw
    return out


class Queue:
    """DVC's experiment queue of the project at `root`, through the `dvc` command."""

    def __init__(self, root: Path):
        self.root = root

    def _dvc(self, *args: str, check: bool = True) -> str:
        # output to a file, not a pipe: `dvc queue start` leaves a worker holding what it inherited
        with tempfile.TemporaryFile("w+") as out:
            r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=self.root, stdout=out, stderr=out,
                               stdin=subprocess.DEVNULL)
            out.seek(0)
            text = out.read()
        if check and r.returncode != 0:
            why = next((ln for ln in text.splitlines() if ln.startswith("ERROR")), text.strip()[-300:])
            raise ClipprobeError(f"dvc {' '.join(args[:3])} ...: {why}")
        return text

    def queue(self, cell: Cell, extra: list[str], target: str | None) -> str:
        """Queue the cell's experiment; its name."""
        sets = [a for o in cell.overrides(extra) for a in ("-S", o)]
        out = self._dvc("exp", "run", "--queue", *([target] if target else []), *sets)
        found = re.search(r"Queued experiment '([^']+)'", out)
        if not found:
            raise ClipprobeError(f"dvc exp run --queue did not queue {cell}: {out.strip()[-300:]}")
        return found[1]

    def start(self, jobs: int) -> None:
        self._dvc("queue", "start", "-j", str(jobs))

    def status(self) -> tuple[dict[str, str], int]:
        """Each queued experiment's status by name, and how many workers are active."""
        out = self._dvc("queue", "status")
        states = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and re.fullmatch(r"[0-9a-f]{7}", parts[0]):
                states[parts[1]] = parts[-1]
        workers = re.search(r"Worker status: (\d+) active", out)
        return states, int(workers[1]) if workers else 0

    def kill(self, name: str) -> None:
        self._dvc("queue", "kill", name, check=False)

    def error_line(self, name: str) -> str:
        """The line of an experiment's log that says why it failed."""
        lines = [ln.strip() for ln in self._dvc("queue", "logs", name, check=False).splitlines() if ln.strip()]
        for prefix in ("error:", "ERROR:"):   # a stage's one line first, then DVC's
            hits = [ln for ln in lines if ln.startswith(prefix)]
            if hits:
                return hits[-1]
        return lines[-1] if lines else "(no log)"


def experiments(root: Path) -> list[tuple[str, str, dict]]:
    """(name, state, params) of every experiment of HEAD: queued, running, success or failed."""
    from dvc.repo import Repo

    out = []
    with Repo(str(root)) as r:
        for base in r.experiments.show(revs=["HEAD"], num=1, hide_workspace=True):
            for exp_range in base.experiments or []:
                state = exp_range.revs[0]
                status = exp_range.executor.state if exp_range.executor else "success"
                if status == "success" and (state.error or state.data is None):
                    status = "failed"
                raw = state.data.params.get("params.yaml", {}).get("data", {}) if state.data else {}
                out.append((exp_range.name or state.name or state.rev[:7], status, raw))
    return out


def _say(line: str) -> None:
    print(line, flush=True)


def run(root: Path, cells: list[Cell], extra: list[str], jobs: int = 1, target: str | None = None,
        poll: float = POLL_S, queue: Queue | None = None, say=_say) -> tuple[dict[Cell, str], dict[Cell, str]]:
    """Run the grid to its end: (finished cells -> experiment name, failed cells -> error line)."""
    queue = queue or Queue(root)
    wanted = check_cells(root, cells, extra)

    def match(states: set[str]) -> dict[Cell, str]:
        found = {}
        for name, status, raw in experiments(root):
            for cell, p in wanted.items():
                if status in states and raw == p:
                    found.setdefault(cell, name)
        return found

    done, pending = match({"success"}), match({"queued", "running"})
    pending = {c: n for c, n in pending.items() if c not in done}
    todo = [c for c in cells if c not in done and c not in pending]
    say(f"grid: {len(cells)} cells; {len(done)} finished already, {len(pending)} queued or running, "
        f"queueing {len(todo)}")
    waiting = {n: c for c, n in pending.items()}
    for cell in todo:
        waiting[queue.queue(cell, extra, target)] = cell
    failed = {}
    if waiting:
        failed = _watch(queue, waiting, lambda cell: queue.queue(cell, extra, target), jobs, poll, say)
    done.update(match({"success"}))
    for cell in cells:   # ended without an experiment of its params and without a failure line
        if cell not in done and cell not in failed:
            failed[cell] = "ended without a finished experiment; see dvc queue status"
    return {c: done[c] for c in cells if c in done}, failed


def _watch(queue: Queue, waiting: dict[str, Cell], requeue, jobs: int, poll: float, say) -> dict[Cell, str]:
    """Start the queue and watch `waiting` (experiment name -> cell) until none is queued or running,
    starting it again when its workers are gone (`requeue(cell)` queues a cell a dead worker left
    running); the failed cells with their error line."""
    queue.start(jobs)
    started, idle, last, failed, restarts, ended = time.monotonic(), 0, None, {}, 0, 0
    while True:
        states, workers = queue.status()
        ours = {n: states.get(n, "gone") for n in waiting}
        for name, state in ours.items():
            if state == "Failed" and waiting[name] not in failed:
                failed[waiting[name]] = queue.error_line(name)
                say(f"grid: failed: {waiting[name]} ({name}): {failed[waiting[name]]}")
        counts = {s: sum(v == s for v in ours.values()) for s in ("Success", "Running", "Queued", "Failed")}
        if counts != last:
            say(f"grid: {counts['Success']} done, {counts['Running']} running, {counts['Queued']} queued, "
                f"{counts['Failed']} failed of {len(ours)}")
            last = counts
        if not any(s in WAITING for s in ours.values()):
            return failed
        if counts["Success"] + counts["Failed"] > ended:   # cells end: the restarts so far did their job
            ended, restarts = counts["Success"] + counts["Failed"], 0
        idle = idle + 1 if workers == 0 else 0
        if idle >= DEAD_POLLS and time.monotonic() - started > GRACE_S:
            if restarts == MAX_RESTARTS:
                raise ClipprobeError(f"the queue's workers died {restarts} times in a row with no cell ending; see "
                                     f"{queue.root / '.dvc/tmp/exps/celery'}/*.out for why, then rerun clipprobe grid "
                                     "(finished cells are kept)")
            restarts += 1
            stale = [n for n, s in ours.items() if s == "Running"]   # a dead worker's: nothing runs them
            for name in stale:
                queue.kill(name)
                cell = waiting.pop(name)
                waiting[requeue(cell)] = cell
            say(f"grid: the queue has no worker left ({counts['Queued']} queued"
                + (f", {len(stale)} left running by it, queued again" if stale else "") + "); starting it again")
            queue.start(jobs)
            started, idle = time.monotonic(), 0
        time.sleep(poll)
