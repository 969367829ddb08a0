"""The leaderboard's logic on synthetic experiment records, without DVC."""

import csv
import io
from datetime import datetime, timedelta
from importlib import import_module

import numpy as np
import pytest
import tomllib
from conftest import REPO
from PIL import Image

from clipprobe import metrics
from clipprobe.errors import ClipprobeError
from clipprobe.probe import fewshot as fewshot_mod
from clipprobe.report import figure, leaderboard
from clipprobe.report.experiments import _metrics
from clipprobe.report.leaderboard import PROBE, ZERO_SHOT, Experiment

T0 = datetime(2025, 1, 1, 12, 0, 0)


def exp(name, model, dataset, acc, minute=0, weights="random", layer="projection", C=1.0, **files):
    metrics = {"accuracy.json": acc if isinstance(acc, dict) else {"top1": acc}}
    metrics.update({f"{k}.json": v for k, v in files.items()})
    return Experiment(name=name, rev=f"{name}0000000", baseline="abc1234", timestamp=T0 + timedelta(minutes=minute),
                      params={"data": {"name": dataset, "root": "auto"}, "C": C,
                              "model": {"name": model, "weights": weights}, "extract": {"layer": layer}},
                      metrics=metrics)


def cells(board, title=PROBE):
    table = next(t for t in board.tables if t.title == title)
    return {(r[0], c[0]): cell.value for (r, c), cell in table.cells.items() if r[2] == "projection"}, table


def csv_rows(board):
    return list(csv.DictReader(io.StringIO(leaderboard.csv_text(board))))


GRID = [exp("a", "ViT-B/32", "cifar10", 80.0), exp("b", "ViT-B/32", "dtd", 50.0),
        exp("c", "RN50", "cifar10", 70.0), exp("d", "RN50", "dtd", 64.0)]


def test_one_row_per_model_weights_layer_one_column_per_dataset_and_their_mean():
    board = leaderboard.build(GRID + [exp("e", "ViT-B/32", "cifar10", 81.0, layer="pre_projection")])
    values, table = cells(board)
    assert board.rows == [("RN50", "random", "projection"), ("ViT-B/32", "random", "projection"),
                          ("ViT-B/32", "random", "pre_projection")]     # by mean, rows lacking a dataset last
    assert table.columns == [("cifar10", "top1"), ("dtd", "top1")]
    assert table.cells[board.rows[2], ("cifar10", "top1")].value == 81.0
    assert values == {("ViT-B/32", "cifar10"): 80.0, ("ViT-B/32", "dtd"): 50.0,
                      ("RN50", "cifar10"): 70.0, ("RN50", "dtd"): 64.0}
    assert table.mean(board.rows[0]) == 67.0 and table.mean(board.rows[1]) == 65.0
    assert table.mean(board.rows[2]) is None          # a mean over fewer datasets would not compare
    assert board.replaced == [] and board.skipped == []


def test_headline_is_score_named_by_metric_where_present_else_top1():
    board = leaderboard.build([exp("a", "RN50", "flowers102", {"top1": 90.0, "metric": "mean_per_class_recall",
                                                                "score": 85.5}),
                               exp("b", "RN50", "cifar10", {"top1": 70.0, "top5": 99.0})])
    _, table = cells(board)
    assert table.columns == [("cifar10", "top1"), ("flowers102", "mean_per_class_recall")]
    assert table.mean(board.rows[0]) == pytest.approx((85.5 + 70.0) / 2)


def test_best_of_each_column_and_of_the_mean_is_marked_ties_all():
    board = leaderboard.build(GRID + [exp("e", "RN101", "cifar10", 80.0), exp("f", "RN101", "dtd", 10.0)])
    md = leaderboard.markdown(board)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["ViT-B/32"].endswith("| **80.00** | 50.00 | 65.00 |")
    assert lines["RN50"].endswith("| 70.00 | **64.00** | **67.00** |")
    assert lines["RN101"].endswith("| **80.00** | 10.00 | 45.00 |")
    best = {(r["model"], r["dataset"]) for r in csv_rows(board) if r["best"] == "true"}
    assert best == {("ViT-B/32", "cifar10"), ("RN101", "cifar10"), ("RN50", "dtd"), ("RN50", "mean")}


def test_duplicates_the_latest_wins_whatever_the_order_and_the_output_says_so():
    old = exp("old-run", "RN50", "cifar10", 70.0, minute=1, C=1.0)
    new = exp("new-run", "RN50", "cifar10", 72.0, minute=2, C=0.316)
    for order in ([old, new], [new, old]):
        board = leaderboard.build([*order, exp("x", "RN50", "dtd", 60.0)])
        values, table = cells(board)
        assert values[("RN50", "cifar10")] == 72.0
        assert table.cells[board.rows[0], ("cifar10", "top1")].experiment == "new-run"
        md = leaderboard.markdown(board)
        assert "the latest wins" in md
        assert "RN50 / random / projection on cifar10: new-run (2025-01-01 12:02:00) over old-run" in md
        assert board.varying == {"C": ["0.316", "1.0"]}
        rows = [r for r in csv_rows(board) if r["dataset"] == "cifar10"]
        assert [(r["value"], r["experiment"]) for r in rows] == [("72.0", "new-run")]


def test_duplicates_error_names_the_experiments():
    with pytest.raises(ClipprobeError, match="2 experiments for RN50 / random / projection on cifar10: b, a"):
        leaderboard.build([exp("a", "RN50", "cifar10", 70.0, minute=1), exp("b", "RN50", "cifar10", 71.0, minute=2)],
                          duplicates="error")


def _fewshot_json(means: dict[int, list[float]], metric="top1"):
    """A fewshot.json as the fewshot stage writes it (its own summary function), test scores per seed."""
    runs = [fewshot_mod.Run(k=k, seed=s, C=1.0, val_score=50.0,
                            test={"top1": v, "mean_per_class_recall": v - 1, "score": v, "metric": metric})
            for k, values in means.items() for s, v in enumerate(values)]
    return fewshot_mod.summary(runs, [], ["a", "b"], sorted(means), seeds=2)


def _zeroshot_json(model="RN50"):
    """A zeroshot.json as the zeroshot stage writes it: metrics.metrics (here top-1 3 of 4) and its fields."""
    y, scores = np.array([0, 1, 1, 0]), np.eye(2)[[0, 1, 0, 0]]
    return {**metrics.metrics(y, scores, np.arange(2)), "dataset": "cifar10", "model": model, "weights": "random"}


ACC = {"top1": 80.0, "dataset": "cifar10", "model": "RN50", "weights": "random"}


def test_zero_shot_and_few_shot_tables_from_the_files_their_stages_write():
    few = _fewshot_json({1: [38.0, 42.0], 4: [60.0, 62.0]})
    board = leaderboard.build([exp("a", "RN50", "cifar10", ACC, zeroshot=_zeroshot_json(), fewshot=few),
                               exp("b", "RN50", "dtd", 50.0)])
    assert [t.title for t in board.tables] == [PROBE, ZERO_SHOT, "few-shot, 1 shot", "few-shot, 4 shots"]
    assert cells(board, ZERO_SHOT)[0] == {("RN50", "cifar10"): 75.0}
    assert cells(board, "few-shot, 1 shot")[0] == {("RN50", "cifar10"): 40.0}
    assert cells(board, "few-shot, 4 shots")[0] == {("RN50", "cifar10"): 61.0}
    md = leaderboard.markdown(board)
    assert "## Zero-shot" in md and "## Few-shot, 1 shot" in md and board.skipped == []


def test_fewshot_reads_the_headline_mean_over_seeds_named_by_the_files_metric():
    few = _fewshot_json({2: [70.0, 80.0]}, metric="mean_per_class_recall")
    assert leaderboard.fewshot(few) == {2: ("mean_per_class_recall", 75.0)}
    assert leaderboard.fewshot({"results": {"2": {"top1_mean": 70.0}}}) == {2: ("top1", 70.0)}
    assert leaderboard.fewshot(_fewshot_json({})) == {}        # few-shot off, or multi-label


def test_a_zeroshot_json_of_another_run_is_not_shown():
    board = leaderboard.build([exp("a", "RN50", "cifar10", ACC, zeroshot=_zeroshot_json(model="ViT-B/32"))])
    assert [t.title for t in board.tables] == [PROBE]
    assert board.skipped == [("a", "its zeroshot.json has no score or top1, or is another run's "
                                   "(zero-shot cell left empty)")]


def test_a_model_without_a_text_tower_shows_a_dash_for_zero_shot_and_its_layer_as_its_source_resolved_it():
    timm_acc = {**ACC, "model": "timm:test_vit", "layer": "pre_logits"}
    no_tower = {"dataset": "cifar10", "model": "timm:test_vit", "weights": "random", "text_tower": False,
                "reason": "timm models are image towers only"}
    board = leaderboard.build([exp("a", "RN50", "cifar10", ACC, zeroshot=_zeroshot_json()),
                               exp("t", "timm:test_vit", "cifar10", timm_acc, layer="auto", zeroshot=no_tower)])
    timm_row = ("timm:test_vit", "random", "pre_logits")     # extract.layer: auto, as accuracy.json records it
    assert timm_row in board.rows and board.skipped == []
    zero_shot = next(t for t in board.tables if t.title == ZERO_SHOT)
    assert zero_shot.value(timm_row, ("cifar10", "top1")) is None
    md = leaderboard.markdown(board).split("## Zero-shot")[1]
    assert "| timm:test_vit | random | pre_logits | - | - |" in md and "| RN50 | random | projection | **75.00** |" in md


def test_experiments_without_a_headline_are_listed_not_shown():
    bad = Experiment(name="no-metrics", params={"model": {"name": "RN50"}, "data": {"name": "dtd"}})
    board = leaderboard.build([*GRID, bad, exp("broken", "RN50", "mnist", {"top5": 99.0})])
    assert len(board.rows) == 2 and [t.columns for t in board.tables][0] == [("cifar10", "top1"), ("dtd", "top1")]
    assert "Not shown: no-metrics (no metrics/accuracy.json); broken (accuracy.json has neither score nor top1)" \
        in leaderboard.markdown(board)


def test_labels_shorten_paths_but_not_openai_model_names():
    assert leaderboard.labels(["ViT-B/32", "/x/tests/tiny-clip.json", "RN50", "./ckpt.pt"]) == {
        "ViT-B/32": "ViT-B/32", "/x/tests/tiny-clip.json": "tiny-clip.json", "RN50": "RN50", "./ckpt.pt": "ckpt.pt"}
    assert leaderboard.labels(["hf:/models/dinov2-small", "hf:facebook/dinov2-base", "timm:convnext_base"]) == {
        "hf:/models/dinov2-small": "hf:dinov2-small", "hf:facebook/dinov2-base": "hf:facebook/dinov2-base",
        "timm:convnext_base": "timm:convnext_base"}
    assert leaderboard.labels(["/data/pets", "cifar10"], dataset=True) == {"/data/pets": "pets", "cifar10": "cifar10"}
    assert leaderboard.labels(["/a/pets", "/b/pets"], dataset=True) == {"/a/pets": "/a/pets", "/b/pets": "/b/pets"}
    assert leaderboard.labels(["wds:/data/wds_cifar10/{split}/{0..9}.tar", "hf:/data/pets", "hf:owner/food"],
                              dataset=True) == {"wds:/data/wds_cifar10/{split}/{0..9}.tar": "wds:wds_cifar10",
                                                "hf:/data/pets": "hf:pets", "hf:owner/food": "hf:food"}


def test_metrics_of_an_experiment_are_read_by_file_name_those_under_metrics_first():
    collected = {"other/accuracy.json": {"data": {"top1": 1.0}}, "metrics/accuracy.json": {"data": {"top1": 2.0}},
                 "metrics/tune.json": {"data": {"C": 1.0}}, "metrics/zeroshot.json": {"error": ValueError("bad")},
                 "metrics/fewshot.json": {"error": FileNotFoundError(2, "missing")}}
    assert _metrics(collected) == ({"accuracy.json": {"top1": 2.0}}, {"zeroshot.json": "metrics/zeroshot.json"})


def test_a_malformed_metrics_file_is_named_as_malformed_not_missing():
    torn = Experiment(name="torn", params={"model": {"name": "RN50"}, "data": {"name": "dtd"}},
                      malformed={"accuracy.json": "metrics/accuracy.json"})
    half = exp("half", "RN50", "mnist", 50.0)
    half = Experiment(**{**half.__dict__, "malformed": {"fewshot.json": "metrics/fewshot.json"}})
    board = leaderboard.build([*GRID, torn, half])
    assert board.skipped == [("torn", "its metrics/accuracy.json is malformed, not valid JSON"),
                             ("half", "its metrics/fewshot.json is malformed, not valid JSON (its cells left empty)")]
    assert ("RN50", "random", "projection") in board.rows and "no metrics/accuracy.json" not in leaderboard.markdown(board)


def test_figure_of_10_models_by_25_datasets_gives_each_cell_its_size(tmp_path):
    exps = [exp(f"e{i}-{j}", f"model-{i}", f"dataset-{j:02d}", 50.0 + i + j / 10, minute=i * 25 + j)
            for i in range(10) for j in range(25)]
    board = leaderboard.build(exps)
    figure.draw(board, tmp_path / "board.png")
    width, height = Image.open(tmp_path / "board.png").size
    dpi = figure.DPI
    assert width > 26 * figure.CELL_W * dpi and height > 10 * figure.CELL_H * dpi
    assert not list(tmp_path.glob(".*.tmp*"))


def test_the_clipprobe_console_script_is_the_cli_main():
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["clipprobe"]
    module, _, attr = target.partition(":")
    assert getattr(import_module(module), attr) is import_module("clipprobe.report.cli").main


@pytest.mark.parametrize("flag", ["--md", "--csv", "--png"])
def test_a_report_path_that_is_a_folder_is_one_line_before_dvc_is_asked(tmp_path, monkeypatch, capsys, flag):
    from clipprobe.report import cli
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)                    # not a DVC project: the folder is named first
    assert cli.main(["report", flag, "out"]) == 1
    name = {"--md": "leaderboard.md", "--csv": "leaderboard.csv", "--png": "leaderboard.png"}[flag]
    assert capsys.readouterr().err == f"error: {flag} out: is a folder; give a file path (out/{name}) or none\n"
