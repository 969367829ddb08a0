"""The `clipprobe` command: `clipprobe report` (the leaderboard) and `clipprobe grid` (run a grid)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipprobe import atomic
from clipprobe.errors import ClipprobeError

NONE = "none"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipprobe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rep = sub.add_parser(
        "report", help="the models x datasets leaderboard of finished DVC experiments",
        description="The models x datasets leaderboard of finished DVC experiments: one row per (model, "
                    "weights, layer), one column per dataset with its headline metric, a mean column, "
                    "the best of each column marked; zero-shot and few-shot tables where those metrics "
                    "exist. Printed as Markdown and written as Markdown, CSV (one line per cell) and a "
                    "PNG heatmap. With no finished experiment it prints one line and exits with status 1.")
    rep.add_argument("--repo", metavar="DIR", help="the DVC project (default: the one around the current "
                     "directory)")
    which = rep.add_mutually_exclusive_group()
    which.add_argument("--exp", action="append", metavar="NAME",
                       help="only these experiments, by name or commit (repeat, or separate with commas); "
                            "default: every finished experiment of every commit")
    which.add_argument("--baseline", metavar="REV",
                       help="only the experiments of this baseline commit (HEAD, a branch, a tag or a SHA)")
    rep.add_argument("--duplicates", choices=("latest", "error"), default="latest",
                     help="two experiments for the same model and dataset: the latest wins (default; the "
                          "report lists what it replaced), or stop with an error")
    _output_args(rep)
    grid = sub.add_parser(
        "grid", help="run a models x datasets grid of experiments through DVC's queue, to its end",
        description="Queue the cells of a models x datasets grid that no experiment of this commit has "
                    "finished (dvc exp run --queue), start the queue, watch it (starting it again when its "
                    "worker dies), name each failed cell with its error line, and end with the leaderboard "
                    "of the grid. Run it again to finish what is left: finished cells are skipped. Exit "
                    "status 1 when a cell failed.")
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
    _output_args(grid)
    return parser


def _output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--md", default="reports/leaderboard.md", metavar="PATH",
                        help=f"Markdown file (default: %(default)s; {NONE}: do not write)")
    parser.add_argument("--csv", default="reports/leaderboard.csv", metavar="PATH",
                        help=f"CSV file, one line per cell (default: %(default)s; {NONE}: do not write)")
    parser.add_argument("--png", default="reports/leaderboard.png", metavar="PATH",
                        help=f"heatmap of the linear-probe table (default: %(default)s; {NONE}: do not write)")


def _check_outputs(args: argparse.Namespace) -> None:
    """A report path that is a folder stops before DVC is asked for anything."""
    for flag, path, name in (("--md", args.md, "leaderboard.md"), ("--csv", args.csv, "leaderboard.csv"),
                             ("--png", args.png, "leaderboard.png")):
        if path != NONE and Path(path).is_dir():
            raise ClipprobeError(f"{flag} {path}: is a folder; give a file path ({Path(path) / name}) or {NONE}")


def report(args: argparse.Namespace) -> int:
    from clipprobe.report import experiments, leaderboard

    _check_outputs(args)
    names = [n.strip() for arg in args.exp or [] for n in arg.split(",") if n.strip()]
    found, unfinished = experiments.collect(args.repo, names=names or None, baseline=args.baseline)
    board = leaderboard.build(found, duplicates=args.duplicates)
    if not board.rows:
        scope = f"of baseline {args.baseline}" if args.baseline else "in this project"
        why = "; ".join(f"{n}: {w}" for n, w in board.skipped) if board.skipped else None
        more = f" ({unfinished} queued, running or failed: see dvc queue status)" if unfinished else ""
        print(f"no finished experiments with metrics {scope}" + (f" ({why})" if why else more)
              + "; run some with dvc exp run --queue ... and dvc queue start", file=sys.stderr)
        return 1
    text = leaderboard.markdown(board)
    print(text, end="")
    written = []
    if args.md != NONE:
        atomic.write_text(Path(args.md), text)
        written.append(args.md)
    if args.csv != NONE:
        atomic.write_text(Path(args.csv), leaderboard.csv_text(board))
        written.append(args.csv)
    if args.png != NONE:
        from clipprobe.report import figure
        figure.draw(board, args.png)
        written.append(args.png)
    if written:
        print(f"\nwrote {', '.join(written)}")
    return 0


def _names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def grid(args: argparse.Namespace) -> int:
    from clipprobe.report import grid as grids

    _check_outputs(args)
    if args.jobs < 1:
        raise ClipprobeError(f"-j {args.jobs}: run at least one experiment at once")
    root = Path(args.repo or ".").resolve()
    if not (root / "dvc.yaml").is_file():
        raise ClipprobeError(f"{root}: no dvc.yaml; run clipprobe grid in a clipprobe project, or pass --repo")
    cells = [grids.Cell(m, d) for m in _names(args.models) for d in _names(args.datasets)]
    done, failed = grids.run(root, cells, args.set_param, jobs=args.jobs, target=args.target, poll=args.poll)
    for cell, line in failed.items():
        print(f"grid: FAILED {cell}: {line}", file=sys.stderr)
    print(f"grid: {len(done)} of {len(cells)} cells finished" + (f", {len(failed)} failed" if failed else ""), flush=True)
    if done:
        print()
        report(argparse.Namespace(repo=str(root), exp=[",".join(done.values())], baseline=None,
                                  duplicates="latest", md=args.md, csv=args.csv, png=args.png))
    return 1 if failed or not done else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return grid(args) if args.command == "grid" else report(args)
    except ClipprobeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
