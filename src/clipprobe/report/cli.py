"""The `clipprobe` command: `clipprobe report` (the leaderboard), `compare A B` and `grid`.

`report` turns a project's experiments into the leaderboard; `compare` puts two experiments' rows
side by side, paired over the same test images; `grid` runs a models x datasets grid to its end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipprobe import atomic
from clipprobe.errors import ClipprobeError

NONE = "none"


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", metavar="DIR", help="the DVC project (default: the one around the current "
                        "directory)")
    parser.add_argument("--rev", metavar="REV", help="only the experiments of this baseline commit (HEAD, a branch, "
                        "a tag or a SHA); default: every finished experiment of every commit")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipprobe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rep = sub.add_parser(
        "report", help="the models x datasets leaderboard of finished DVC experiments",
        description="The models x datasets leaderboard of finished DVC experiments: one table per result (linear "
                    "probe, zero-shot, few-shot per k), one row per model, weights and protocol (experiments that "
                    "differ in C, data.limit_per_class, train.*, ... are separate rows, labelled by what differs), "
                    "one column per dataset and test-set size; each cell the headline metric with its 95% interval, "
                    "only where the experiment made it. Printed as Markdown and written as Markdown, CSV (one line "
                    "per cell) and a PNG heatmap. With no finished experiment it prints one line and exits with "
                    "status 1.")
    _selection(rep)
    rep.add_argument("--exp", action="append", metavar="NAME",
                     help="only these experiments, by name or commit (repeat, or separate with commas)")
    rep.add_argument("--baseline", metavar="EXP",
                     help="compare every row with the row of experiment EXP, dataset by dataset: the paired "
                          "difference, its 95%% interval and p-value, marked where it survives Holm's correction")
    rep.add_argument("--strict", action="store_true",
                     help="stop where the experiments differ in protocol or two of them give the same cell, "
                          "instead of separate rows and the latest experiment")
    _outputs(rep)
    cmp = sub.add_parser(
        "compare", help="experiment A's row against experiment B's, paired over the same test images",
        description="Experiment A's row (its model, weights and protocol) against experiment B's, on every dataset "
                    "both have: A - B in the headline metric, its paired 95%% interval (a paired bootstrap over the "
                    "test images), the p-value (top-1: exact McNemar; other metrics: paired bootstrap) and whether "
                    "the difference survives Holm's correction over the datasets compared. Refuses, in one line, "
                    "experiments whose test sets differ.")
    cmp.add_argument("a", metavar="A", help="an experiment (name or commit)")
    cmp.add_argument("b", metavar="B", help="the experiment to compare against (name or commit)")
    _selection(cmp)
    grid = sub.add_parser(
        "grid", help="run a models x datasets grid of experiments through DVC's queue, to its end",
        description="Queue the cells of a models x datasets grid that no experiment of this commit has finished "
                    "(dvc exp run --queue), start the queue, watch it (starting it again when its worker dies), "
                    "name each failed cell with its error line, and end with the leaderboard of the grid. Run it "
                    "again to finish what is left: finished cells are skipped. Exit status 1 when a cell failed.")
    grid.add_argument("--models", action="append", required=True, metavar="NAMES",
                      help="model.name values, separated with commas (or the option repeated)")
    grid.add_argument("--datasets", action="append", required=True, metavar="NAMES",
                      help="data.name values, separated with commas (or the option repeated)")
    grid.add_argument("-S", "--set-param", action="append", default=[], dest="set_param", metavar="KEY=VALUE",
                      help="another param for every cell, as dvc exp run -S takes it (repeat)")
    grid.add_argument("--target", metavar="STAGE", help="run the pipeline up to this stage (default: all of it)")
    grid.add_argument("-j", "--jobs", type=int, default=1, help="experiments at once (dvc queue start -j; default 1)")
    grid.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help="how often to look at the queue")
    grid.add_argument("--repo", metavar="DIR", help="the DVC project (default: the current directory)")
    _outputs(grid)
    return parser


def _outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--md", default="reports/leaderboard.md", metavar="PATH",
                        help=f"Markdown file (default: %(default)s; {NONE}: do not write)")
    parser.add_argument("--csv", default="reports/leaderboard.csv", metavar="PATH",
                        help=f"CSV file, one line per cell (default: %(default)s; {NONE}: do not write)")
    parser.add_argument("--png", default="reports/leaderboard.png", metavar="PATH",
                        help=f"heatmap of every table (default: %(default)s; {NONE}: do not write)")


def _check_outputs(args: argparse.Namespace) -> None:
    """A report path that is a folder stops before DVC is asked for anything."""
    for flag, path, name in (("--md", args.md, "leaderboard.md"), ("--csv", args.csv, "leaderboard.csv"),
                             ("--png", args.png, "leaderboard.png")):
        if path != NONE and Path(path).is_dir():
            raise ClipprobeError(f"{flag} {path}: is a folder; give a file path ({Path(path) / name}) or {NONE}")


def _names(args) -> list[str]:
    return [n.strip() for arg in args.exp or [] for n in arg.split(",") if n.strip()]


def _board(args, strict: bool = False, compared: tuple[tuple[str, str], ...] = ()):
    """The leaderboard, the experiments found, and the names of those `compared` ((option, name or
    commit) pairs: the baseline, or A and B), whose cells their rows show over later duplicates'."""
    from clipprobe.report import experiments, leaderboard

    found, unfinished = experiments.collect(args.repo, names=_names(args) or None, rev=args.rev)
    chosen = tuple(_experiment(found, name, option) for option, name in compared)
    board = leaderboard.build(found, strict=strict, prefer=chosen)
    if not board.tables:
        scope = f"of commit {args.rev}" if args.rev else "in this project"
        why = "; ".join(f"{n}: {w}" for n, w in board.skipped) if board.skipped else None
        more = f" ({unfinished} queued, running or failed: see dvc queue status)" if unfinished else ""
        raise ClipprobeError(f"no finished experiments with results {scope}" + (f" ({why})" if why else more)
                             + "; run some with dvc exp run --queue ... and dvc queue start")
    return board, found, chosen


def _experiment(found, name: str, option: str) -> str:
    """The name of the finished experiment `name` (a name or a commit prefix) names."""
    from clipprobe.report import experiments

    match = [e for e in found if experiments.named(e, name)]
    if not match:
        raise ClipprobeError(f"{option} {name}: no finished experiment of that name or commit; `dvc exp show` "
                             "lists them")
    return match[0].name


def _diffs(args, board, found, baseline: str, only: str | None = None):
    from clipprobe.report import experiments, paired

    with experiments.predictions(args.repo, found) as load:
        return paired.against(board, baseline, load, only)


def report(args: argparse.Namespace) -> int:
    _check_outputs(args)
    board, found, chosen = _board(args, strict=args.strict,
                                  compared=(("--baseline", args.baseline),) if args.baseline else ())
    baseline = chosen[0] if chosen else None
    diffs = _diffs(args, board, found, baseline) if baseline is not None else None
    from clipprobe.report import render
    text = render.markdown(board, baseline, diffs)
    print(text, end="")
    written = []
    if args.md != NONE:
        atomic.write_text(Path(args.md), text)
        written.append(args.md)
    if args.csv != NONE:
        atomic.write_text(Path(args.csv), render.csv_text(board, diffs))
        written.append(args.csv)
    if args.png != NONE:
        from clipprobe.report import figure
        figure.draw(board, args.png, baseline, diffs)
        written.append(args.png)
    if written:
        print(f"\nwrote {', '.join(written)}")
    return 0


def compare(args: argparse.Namespace) -> int:
    from clipprobe.report import render

    args.exp = None
    board, found, (a, b) = _board(args, compared=(("A:", args.a), ("B:", args.b)))
    diffs = _diffs(args, board, found, b, only=a)
    if not diffs:
        raise ClipprobeError(f"{a} and {b} have no result on the same dataset and test set to compare "
                             f"({_scored_on(board, a)} against {_scored_on(board, b)}), or are one row (same "
                             "model, weights and protocol)")
    cols = render.column_labels(board)
    lines = [f"{a} (A) against {b} (B): A - B, paired over the same test images", "",
             "| table | A | B | dataset | A (%) | B (%) | A - B [95% interval] | p | test | p (Holm) | significant |",
             "|---|---|---|---|---:|---:|---:|---:|---|---:|---|"]
    for (title, row, c), d in diffs.items():
        t = next(t for t in board.tables if t.title == title)
        base = t.row_of[b]
        labels = render.row_labels([row, base])
        ca, cb = t.cells[row, c], t.cells[base, c]
        lines.append(f"| {title} | {labels[row]} ({ca.experiment}) | {labels[base]} ({cb.experiment}) | {cols[c]} | "
                     f"{ca.value:.2f} | {cb.value:.2f} | {d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}] | {d.p:.3g} | "
                     f"{d.test} | {d.p_holm:.3g} | {'yes' if d.significant else 'no'} |")
    print("\n".join(lines) + "\n\nIn points of each dataset's headline metric; significant: p < 0.05 after "
          "Holm's correction over the datasets compared")
    return 0


def _scored_on(board, name: str) -> str:
    """Where experiment `name` has linear-probe or zero-shot cells: `cifar10 (n=10000)`, or `nothing`."""
    from clipprobe.report.names import short

    cols = sorted({(c[0], c[2]) for t in board.tables if t.stage in ("evaluate", "zeroshot") for (r, c), cell
                   in t.cells.items() if cell.experiment == name})
    return ", ".join(f"{short(d, dataset=True)} (n={n})" for d, n in cols) or "nothing"


def _split(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def grid(args: argparse.Namespace) -> int:
    from clipprobe.report import grid as grids

    _check_outputs(args)
    if args.jobs < 1:
        raise ClipprobeError(f"-j {args.jobs}: run at least one experiment at once")
    root = Path(args.repo or ".").resolve()
    if not (root / "dvc.yaml").is_file():
        raise ClipprobeError(f"{root}: no dvc.yaml; run clipprobe grid in a clipprobe project, or pass --repo")
    cells = [grids.Cell(m, d) for m in _split(args.models) for d in _split(args.datasets)]
    done, failed = grids.run(root, cells, args.set_param, jobs=args.jobs, target=args.target, poll=args.poll)
    for cell, line in failed.items():
        print(f"grid: FAILED {cell}: {line}", file=sys.stderr)
    print(f"grid: {len(done)} of {len(cells)} cells finished" + (f", {len(failed)} failed" if failed else ""), flush=True)
    if done:
        print()
        report(argparse.Namespace(repo=str(root), exp=[",".join(done.values())], rev=None, baseline=None,
                                  strict=False, md=args.md, csv=args.csv, png=args.png))
    return 1 if failed or not done else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"report": report, "compare": compare, "grid": grid}[args.command](args)
    except ClipprobeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
