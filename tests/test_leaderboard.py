"""The leaderboard's logic on synthetic experiment records, without DVC."""

import csv
import io
from dataclasses import replace
from datetime import datetime, timedelta
from importlib import import_module

import numpy as np
import pytest
import tomllib
from conftest import REPO
from PIL import Image

from clipprobe.errors import ClipprobeError
from clipprobe.probe import fewshot as fewshot_mod
from clipprobe.report import figure, leaderboard, names, render
from clipprobe.report.leaderboard import PROBE, ZERO_SHOT, Experiment
from clipprobe.report.paired import Difference

T0 = datetime(2025, 1, 1, 12, 0, 0)


def record(dataset, model, value, weights="random", layer="projection", n=100, metric="top1", params=None,
           features=None, notes=(), **extra):
    """A results/evaluate.json or zeroshot.json as the stages write it (the fields the report reads)."""
    return {"dataset": dataset, "model": model, "weights": weights, "layer": layer, "features": features,
            "params": params or {}, "metric": metric, "n_test": n,
            "metrics": {metric: {"value": value, "low": value - 2.5, "high": value + 2.0}}, "notes": list(notes),
            **extra}


def exp(name, model, dataset, acc, minute=0, weights="random", layer="projection", C=1.0, limit=None,
        zeroshot=None, fewshot=None, features=None):
    """An experiment whose records are its own unless a record given says otherwise."""
    records = {"evaluate": acc if isinstance(acc, dict) else
               record(dataset, model, acc, weights, layer, params={"C": C}, features=features)}
    records.update({k: v for k, v in (("zeroshot", zeroshot), ("fewshot", fewshot)) if v is not None})
    return Experiment(name=name, rev=f"{name}0000000", baseline="abc1234", timestamp=T0 + timedelta(minutes=minute),
                      params={"data": {"name": dataset, "root": "auto", "limit_per_class": limit}, "C": C,
                              "model": {"name": model, "weights": weights}, "extract": {"layer": layer},
                              "fewshot": {"seeds": 2}},
                      records=records, features=features)


def table(board, title=PROBE):
    return next(t for t in board.tables if t.title == title)


def cells(board, title=PROBE):
    t = table(board, title)
    return {(r[0], c[0]): cell.value for (r, c), cell in t.cells.items()}


def csv_rows(board, diffs=None):
    return list(csv.DictReader(io.StringIO(render.csv_text(board, diffs))))


GRID = [exp("a", "ViT-B/32", "cifar10", 80.0), exp("b", "ViT-B/32", "dtd", 50.0),
        exp("c", "RN50", "cifar10", 70.0), exp("d", "RN50", "dtd", 64.0)]


def test_one_row_per_model_one_column_per_dataset_metric_and_test_set_size_and_their_mean():
    board = leaderboard.build(GRID)
    t = table(board)
    assert [r[:2] for r in t.rows] == [("RN50", "random"), ("ViT-B/32", "random")]      # by mean
    assert t.columns == [("cifar10", "top1", 100), ("dtd", "top1", 100)]
    assert cells(board) == {("ViT-B/32", "cifar10"): 80.0, ("ViT-B/32", "dtd"): 50.0,
                            ("RN50", "cifar10"): 70.0, ("RN50", "dtd"): 64.0}
    assert t.mean(t.rows[0]) == 67.0 and t.mean(t.rows[1]) == 65.0
    assert board.replaced == [] and board.skipped == [] and board.not_run == []


def test_each_cell_shows_its_interval_and_each_header_its_test_set_size():
    md = render.markdown(leaderboard.build(GRID))
    assert "| model | weights | layer | cifar10 (top-1, n=100) | dtd (top-1, n=100) | mean |" in md
    assert "| RN50 | random | projection | 70.00 [67.50, 72.00] | **64.00** [61.50, 66.00] | **67.00** |" in md
    row = next(r for r in csv_rows(leaderboard.build(GRID)) if r["experiment"] == "c")
    assert (row["value"], row["low"], row["high"], row["n_test"]) == ("70.0", "67.5", "72.0", "100")


def test_a_row_lacking_a_dataset_has_no_mean_and_comes_last():
    board = leaderboard.build(GRID + [exp("e", "RN101", "cifar10", 95.0)])
    t = table(board)
    assert t.rows[-1][0] == "RN101" and t.mean(t.rows[-1]) is None


def test_headline_is_the_records_metric_and_names_its_column():
    board = leaderboard.build([exp("a", "RN50", "flowers102", record("flowers102", "RN50", 85.5,
                                                                     metric="mean_per_class_recall", n=6149,
                                                                     params={"C": 1.0})),
                               exp("b", "RN50", "cifar10", 70.0)])
    assert table(board).columns == [("cifar10", "top1", 100), ("flowers102", "mean_per_class_recall", 6149)]
    assert "flowers102 (mean per-class recall, n=6149)" in render.markdown(board)


def test_best_of_each_column_and_of_the_mean_is_marked_ties_all():
    board = leaderboard.build(GRID + [exp("e", "RN101", "cifar10", 80.0), exp("f", "RN101", "dtd", 10.0)])
    best = {(r["model"], r["dataset"]) for r in csv_rows(board) if r["best"] == "true"}
    assert best == {("ViT-B/32", "cifar10"), ("RN101", "cifar10"), ("RN50", "dtd"), ("RN50", "mean")}


def test_experiments_that_differ_in_protocol_are_separate_rows_labelled_by_what_differs():
    auto = exp("searched", "RN50", "cifar10", 72.0, minute=1, C="auto")
    given = exp("given", "RN50", "cifar10", 70.0, minute=2, C=0.316)      # later: "latest wins" would hide auto
    small = exp("small", "RN50", "cifar10", 60.0, minute=3, C="auto", limit=20)
    board = leaderboard.build([auto, given, small])
    t = table(board)
    labels = render.row_labels(t.rows)
    assert {labels[r]: c.experiment for (r, _), c in t.cells.items()} == {
        "RN50 · random · projection · C=auto · all images": "searched",
        "RN50 · random · projection · C=0.316 · all images": "given",
        "RN50 · random · projection · C=auto · 20 per class": "small"}
    assert "| RN50 | random | projection | C=0.316, all images | 70.00 [67.50, 72.00] |" in render.markdown(board)
    assert board.replaced == []


def test_params_only_another_data_source_reads_are_not_protocol():
    def with_data(name, data):
        e = exp(name, "RN50", data["name"], 70.0)
        return replace(e, params={**e.params, "data": {**e.params["data"], **data}})
    hf = {"image_column": "img", "label_column": "label", "splits": {"train": "train", "val": None, "test": "test"}}
    registered = leaderboard.protocol(with_data("a", {"name": "cifar10", **hf}))
    assert not any(k.startswith(("data.image_column", "data.label_column", "data.splits")) for k in registered)
    assert leaderboard.protocol(with_data("b", {"name": "hf:/data/pets", **hf}))["data.image_column"] == "img"
    assert "data.splits.test" in leaderboard.protocol(with_data("c", {"name": "wds:/d/{split}/0.tar", **hf}))
    assert "data.image_column" not in leaderboard.protocol(with_data("d", {"name": "wds:/d/{split}/0.tar", **hf}))


def test_a_new_C_does_not_split_the_zero_shot_rows_it_cannot_change():
    zs = record("cifar10", "RN50", 40.0)
    board = leaderboard.build([exp("searched", "RN50", "cifar10", 72.0, minute=1, C="auto", zeroshot=zs),
                               exp("given", "RN50", "cifar10", 70.0, minute=2, C=0.316, zeroshot=zs)])
    assert len(table(board).rows) == 2 and len(table(board, ZERO_SHOT).rows) == 1
    assert [(t, d, k.name) for t, _, d, k, _ in board.replaced] == [(ZERO_SHOT, "cifar10", "given")]


def test_strict_stops_where_protocols_differ_or_a_cell_repeats():
    with pytest.raises(ClipprobeError, match=r"differ in protocol \(C = 0.316, auto\)"):
        leaderboard.build([exp("a", "RN50", "cifar10", 72.0, C="auto"), exp("b", "RN50", "cifar10", 70.0, C=0.316)],
                          strict=True)
    with pytest.raises(ClipprobeError, match="2 experiments of one protocol for RN50 / random / projection on "
                                             "cifar10: b, a"):
        leaderboard.build([exp("a", "RN50", "cifar10", 70.0, minute=1), exp("b", "RN50", "cifar10", 71.0, minute=2)],
                          strict=True)


def test_duplicates_of_one_protocol_the_latest_wins_whatever_the_order_and_the_output_says_so():
    old = exp("old-run", "RN50", "cifar10", 70.0, minute=1)
    new = exp("new-run", "RN50", "cifar10", 72.0, minute=2)
    for order in ([old, new], [new, old]):
        board = leaderboard.build([*order, exp("x", "RN50", "dtd", 60.0)])
        assert cells(board)[("RN50", "cifar10")] == 72.0
        md = render.markdown(board)
        assert "the latest wins" in md
        assert "linear probe, RN50 · random · projection on cifar10: new-run (2025-01-01 12:02:00) over old-run" in md


def test_the_experiment_compared_with_shows_its_own_cells_over_a_later_rerun():
    old = exp("old-run", "RN50", "cifar10", 70.0, minute=1)
    new = exp("new-run", "RN50", "cifar10", 72.0, minute=2)
    board = leaderboard.build([old, new], prefer=("old-run",))
    assert cells(board)[("RN50", "cifar10")] == 70.0 and table(board).cells[next(iter(table(board).cells))].experiment \
        == "old-run"
    assert "old-run (2025-01-01 12:01:00) over new-run" in render.markdown(board)


def test_results_whose_test_features_the_cache_lacks_say_they_were_matched_by_params_only():
    checked = exp("checked", "RN50", "cifar10", record("cifar10", "RN50", 80.0, params={"C": 1.0}, features="f1"),
                  features="f1")
    unchecked = exp("unchecked", "ViT-B/32", "cifar10", record("cifar10", "ViT-B/32", 81.0, params={"C": 1.0},
                                                              features="f2"))
    board = leaderboard.build([checked, unchecked])
    assert [name for name, note in board.notes if "not in this DVC cache" in note] == ["unchecked"]
    assert "- unchecked: its test features are not in this DVC cache, so its results were matched to it by params " \
           "only" in render.markdown(board)


def test_a_record_of_another_dataset_or_model_is_not_run_in_this_experiment():
    inherited = record("fashion-mnist", "RN50", 10.0)        # a baseline commit's file, kept by a targeted run
    few = _fewshot_record({1: [10.0, 10.0]}, dataset="fashion-mnist")
    board = leaderboard.build([exp("folder-run", "RN50", "/data/folder", 100.0, zeroshot=inherited, fewshot=few)])
    assert [t.title for t in board.tables] == [PROBE]
    assert board.not_run == [
        ("folder-run", "zeroshot", "results/zeroshot.json is from data.name=fashion-mnist (this experiment: "
                                   "/data/folder)"),
        ("folder-run", "fewshot", "results/fewshot.json is from data.name=fashion-mnist (this experiment: "
                                  "/data/folder)")]
    assert "Not run in these experiments" in render.markdown(board)


def test_a_record_of_other_test_features_or_another_protocol_is_not_the_experiments():
    stale = exp("limit-20", "RN50", "cifar10", record("cifar10", "RN50", 80.0, params={"C": 1.0}, features="f100"),
                features="f20")
    other_c = exp("c-given", "RN50", "cifar10", record("cifar10", "RN50", 80.0, params={"C": "auto"}))
    board = leaderboard.build([stale, other_c])
    assert board.tables == [] and [n for n, _ in board.skipped] == ["limit-20", "c-given"]
    assert [why for _, _, why in board.not_run] == [
        "results/evaluate.json scored other test features than this experiment's (another extraction)",
        "results/evaluate.json was made with C=auto (this experiment: 1.0)"]


def _fewshot_record(means: dict[int, list[float]], dataset="cifar10", metric="top1", n_test=4):
    """A results/fewshot.json as the fewshot stage writes it (its own summary function)."""
    y = np.arange(n_test) % 2
    runs = [fewshot_mod.Run(k=k, seed=s, C=1.0, val_score=50.0,
                            test={"top1": v, "mean_per_class_recall": v - 1, "score": v, "metric": metric},
                            correct=np.packbits(np.arange(n_test) < s + 2).tobytes(), n_iters=(10,))
            for k, values in means.items() for s, v in enumerate(values)]
    return {"dataset": dataset, "model": "RN50", "weights": "random", "layer": "projection", "features": None,
            "params": {"fewshot.seeds": 2},
            **fewshot_mod.summary(runs, [], ["a", "b"], sorted(means), 2, y, 1000), "notes": []}


def test_zero_shot_and_few_shot_tables_from_the_records_their_stages_write():
    few = _fewshot_record({1: [38.0, 42.0], 4: [60.0, 62.0]})
    board = leaderboard.build([exp("a", "RN50", "cifar10", 80.0, zeroshot=record("cifar10", "RN50", 75.0),
                                   fewshot=few), exp("b", "RN50", "dtd", 50.0)])
    assert [t.title for t in board.tables] == [PROBE, ZERO_SHOT, "few-shot, 1 shot", "few-shot, 4 shots"]
    assert cells(board, ZERO_SHOT) == {("RN50", "cifar10"): 75.0}
    assert cells(board, "few-shot, 1 shot") == {("RN50", "cifar10"): 40.0}
    cell = next(iter(table(board, "few-shot, 4 shots").cells.values()))
    assert (cell.value, cell.std, cell.n_test) == (61.0, 1.0, 4) and cell.low <= 61.0 <= cell.high
    md = render.markdown(board)
    assert "## Zero-shot" in md and "## Few-shot, 1 shot" in md and " ±1.00 |" in md


def test_a_model_without_a_text_tower_shows_a_dash_for_zero_shot_and_its_layer_as_its_source_resolved_it():
    timm = record("cifar10", "timm:test_vit", 80.0, layer="pre_logits", params={"C": 1.0})   # extract.layer: auto
    no_tower = {"dataset": "cifar10", "model": "timm:test_vit", "weights": "random", "layer": "pre_logits",
                "text_tower": False, "skipped": "timm models are image towers only"}
    board = leaderboard.build([exp("t", "timm:test_vit", "cifar10", timm, layer="auto", zeroshot=no_tower),
                               exp("b", "ViT-B/32", "cifar10", 82.0, zeroshot=record("cifar10", "ViT-B/32", 60.0))])
    assert ("timm:test_vit", "random", "pre_logits", ()) in table(board).rows and board.skipped == []
    assert cells(board, ZERO_SHOT) == {("ViT-B/32", "cifar10"): 60.0}
    assert ("t", "zero-shot not scored: timm models are image towers only") in board.notes
    zero_shot = render.markdown(board).split("## Zero-shot")[1].split("##")[0]
    assert "| timm:test_vit | random | pre_logits | - | - |" in zero_shot
    assert "| ViT-B/32 | random | projection | **60.00** [57.50, 62.00]" in zero_shot


def test_notes_of_the_records_and_a_full_data_probe_smaller_than_the_largest_k_are_shown():
    acc = record("cifar10", "RN50", 80.0, params={"C": 1.0}, n_train_per_class_min=12,
                 notes=["the C search validated on 24 images, 2 of class 'cat' (fewer than 5 per class): ..."])
    board = leaderboard.build([exp("a", "RN50", "cifar10", acc, limit=12, fewshot=_fewshot_record({16: [50, 52]}))])
    md = render.markdown(board)
    assert "- a: the C search validated on 24 images" in md
    assert "- a: the full-data probe was trained on as few as 12 images of a class, fewer than the 16 shots" in md
    assert "## Linear probe, full-data (12 per class)" in md


def test_experiments_without_records_are_listed_not_shown():
    bare = Experiment(name="no-results", params={"model": {"name": "RN50"}, "data": {"name": "dtd"}})
    board = leaderboard.build([*GRID, bare])
    assert "Not shown: no-results (no results/*.json: no scoring stage ran" in render.markdown(board)


def test_differences_from_a_baseline_are_shown_and_bold_where_significant():
    board = leaderboard.build(GRID)
    t = table(board)
    vit, rn50 = (next(r for r in t.rows if r[0] == m) for m in ("ViT-B/32", "RN50"))
    diffs = {(PROBE, vit, ("cifar10", "top1", 100)): Difference("top1", 100, 10.0, 4.0, 16.0, 0.001, "exact McNemar",
                                                                0.002),
             (PROBE, vit, ("dtd", "top1", 100)): Difference("top1", 100, -14.0, -30.0, 1.0, 0.08, "exact McNemar",
                                                            0.08)}
    md = render.markdown(board, baseline="c", diffs=diffs)
    assert "### Linear probe, full-data: difference from RN50 · random · projection (c)" in md
    assert ("| ViT-B/32 | random | projection | **+10.00 [+4.00, +16.00] p=0.002** | -14.00 [-30.00, +1.00] p=0.08 |"
            in md)
    rows = {r["dataset"]: r for r in csv_rows(board, diffs) if r["model"] == "ViT-B/32"}
    assert (rows["cifar10"]["significant"], rows["dtd"]["significant"]) == ("true", "false")
    assert t.row_of["c"] == rn50


def test_against_a_baseline_the_heatmap_colours_only_established_differences():
    board = leaderboard.build(GRID)
    t = table(board)
    vit, rn50 = (next(r for r in t.rows if r[0] == m) for m in ("ViT-B/32", "RN50"))
    cifar, dtd = ("cifar10", "top1", 100), ("dtd", "top1", 100)
    diffs = {(PROBE, vit, cifar): Difference("top1", 100, 10.0, 4.0, 16.0, 0.001, "exact McNemar", 0.002),
             (PROBE, vit, dtd): Difference("top1", 100, -14.0, -30.0, 1.0, 0.08, "exact McNemar", 0.08)}
    cols, _, off, text = figure._panel(t, [vit, rn50], "c", diffs)
    assert off[0, cols.index(cifar)] == 10.0 and off[0, cols.index(dtd)] == 0.0     # -14 is not significant
    assert text[0][cols.index(cifar)][1] == "+10.0*" and text[0][cols.index(dtd)][1] == "-14.0"
    assert off[1, cols.index(cifar)] == 0.0 and off[0, cols.index(None)] == 0.0      # the baseline, the mean


def test_against_a_baseline_few_shot_cells_are_coloured_where_the_intervals_are_apart():
    exps = []
    for name, model, value in (("a", "RN50", 30.0), ("b", "ViT-B/32", 31.0), ("c", "RN101", 80.0)):
        few = {**_fewshot_record({1: [value] * 2}), "model": model}
        few["results"]["1"]["score"].update(value=value, low=value - 5, high=value + 5)
        exps.append(exp(name, model, "cifar10", 50.0, fewshot=few))
    t = next(t for t in leaderboard.build(exps).tables if t.stage == "fewshot")
    rows = [t.row_of[n] for n in "abc"]
    cols, values, off, text = figure._panel(t, rows, "a", {})
    assert off[1, 0] == 0.0 and off[2, 0] == 50.0       # 31 [26, 36] overlaps 30 [25, 35]; 80 [75, 85] does not
    assert text[1][0][1] == "+1.0" and text[2][0][1] == "+50.0"


def test_labels_shorten_paths_but_not_openai_model_names():
    assert names.labels(["ViT-B/32", "/x/tests/tiny-clip.json", "RN50", "./ckpt.pt"]) == {
        "ViT-B/32": "ViT-B/32", "/x/tests/tiny-clip.json": "tiny-clip.json", "RN50": "RN50", "./ckpt.pt": "ckpt.pt"}
    assert names.labels(["hf:/models/dinov2-small", "hf:facebook/dinov2-base", "timm:convnext_base"]) == {
        "hf:/models/dinov2-small": "hf:dinov2-small", "hf:facebook/dinov2-base": "hf:facebook/dinov2-base",
        "timm:convnext_base": "timm:convnext_base"}
    assert names.labels(["/data/pets", "cifar10"], dataset=True) == {"/data/pets": "pets", "cifar10": "cifar10"}
    assert names.labels(["/a/pets", "/b/pets"], dataset=True) == {"/a/pets": "/a/pets", "/b/pets": "/b/pets"}
    assert names.labels(["wds:/data/wds_cifar10/{split}/{0..9}.tar", "hf:/data/pets", "hf:owner/food"],
                        dataset=True) == {"wds:/data/wds_cifar10/{split}/{0..9}.tar": "wds:wds_cifar10",
                                          "hf:/data/pets": "hf:pets", "hf:owner/food": "hf:food"}


def _dpi(path):
    return Image.open(path).info["dpi"]


def test_figure_of_10_models_by_25_datasets_gives_each_cell_its_size_at_150_dpi(tmp_path):
    exps = [exp(f"e{i}-{j}", f"model-{i}", f"dataset-{j:02d}", 50.0 + i + j / 10, minute=i * 25 + j)
            for i in range(10) for j in range(25)]
    figure.draw(leaderboard.build(exps), tmp_path / "board.png")
    width, height = Image.open(tmp_path / "board.png").size
    assert width > 26 * figure.CELL_W * figure.DPI and height > 10 * figure.CELL_H * figure.DPI
    assert min(_dpi(tmp_path / "board.png")) >= 150
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


def test_an_experiments_malformed_record_is_named_as_malformed_not_missing():
    from clipprobe.errors import ClipprobeError
    from clipprobe.report import experiments

    class Commit:   # an experiment's files as DVC's git filesystem hands them over
        files = {"results/zeroshot.json": '{"metric": "top1"}', "results/evaluate.json": '{"metric": "top1", "metrics": {'}

        def exists(self, path):
            return path in self.files

        def read_text(self, path):
            return self.files[path]

    with pytest.raises(ClipprobeError, match=r"^results/evaluate.json at this experiment's commit is not valid JSON"):
        experiments._records(Commit())
    Commit.files.pop("results/evaluate.json")
    assert experiments._records(Commit()) == {"zeroshot": {"metric": "top1"}}   # a missing record is not one
