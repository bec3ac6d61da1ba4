"""Result tables: mean over images and mean ± std over folds, written as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import json

import numpy as np

from medmat.metrics.tables import summarise, write_tables
from medmat.reporting import example_grid


def test_summarise_means_and_fold_statistics():
    per_case = {"a": {"SAD": 1.0}, "b": {"SAD": 3.0}, "c": {"SAD": 5.0}}
    row = summarise(per_case, metrics=("SAD",), folds=[["a", "b"], ["c"]])
    assert row["n"] == 3
    assert row["mean"]["SAD"] == 3.0  # (1 + 3 + 5) / 3 over images
    assert row["fold_mean"]["SAD"] == 3.5  # fold means 2 and 5
    assert row["fold_std"]["SAD"] == 1.5  # population std of {2, 5}


def test_write_tables_round_trip(tmp_path):
    rows = {
        "Closed-form": summarise({"a": {"SAD": 0.5, "MSE": 0.1}}, metrics=("SAD", "MSE")),
        "Information-Flow": summarise({"a": {"SAD": 0.25, "MSE": 0.05}}, metrics=("SAD", "MSE")),
    }
    paths = write_tables(tmp_path / "table", rows, metrics=("SAD", "MSE"), title="t", extra={"machine": "here"})
    markdown = open(paths[0]).read()
    assert "| Information-Flow | 1 | 0.2500 | 0.0500 |" in markdown and "- machine: here" in markdown
    with open(paths[1]) as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["method", "n", "SAD", "MSE"] and float(lines[1][2]) == 0.5
    saved = json.loads(open(paths[2]).read())
    assert saved["rows"]["Closed-form"]["mean"]["MSE"] == 0.1 and saved["machine"] == "here"


def test_example_grid_writes_a_png(tmp_path):
    rows = [{"image": np.random.default_rng(0).random((1, 16, 16)), "uncertainty map": np.full((16, 16), 0.69)}]
    path = example_grid(tmp_path / "grid.png", rows, ["case"])
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
