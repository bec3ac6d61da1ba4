"""benchmarks/compare_runs.py: one Table IV / Table V row per run from its finished folds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tiny_configs import load_benchmark


def _script():
    return load_benchmark("compare_runs")


def _fold(run: Path, fold: int, n: int, sad: float, dice: float, folder: str | None = None) -> None:
    """A finished fold's metrics.json in ``run / folder`` (default ``fold-<fold>``)."""
    metrics = {"SAD": sad, "MSE": 0.01, "Grad": 1.0, "Conn": sad}
    record = {"fold": fold, "test_ids": [f"c{fold}-{i}" for i in range(n)],
              "mean": {"region": metrics, "whole": metrics, "GED": 0.3, "Dice": dice}}
    (run / (folder or f"fold-{fold}")).mkdir(parents=True)
    (run / (folder or f"fold-{fold}") / "metrics.json").write_text(json.dumps(record))


def test_rows_come_from_finished_folds_weighted_by_cases(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _fold(run, 0, n=1, sad=0.4, dice=0.8)
    _fold(run, 1, n=3, sad=0.8, dice=0.9)
    (run / "fold-2").mkdir()  # a fold still training: no metrics.json yet
    _fold(run, 0, n=1, sad=9.0, dice=0.1, folder="fold-0.old")  # a copy a user set aside: not a fold
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"model={run}"])
    _script().main()
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    assert row[0] == "| model" and row[1] == "0,1"
    assert float(row[2]) == pytest.approx((0.4 + 3 * 0.8) / 4)  # Table IV: mean over predictions
    assert row[7] == "0.8500 ± 0.0500"  # Table V Dice: mean ± std over folds

    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"model={run}", "--folds", "1"])
    _script().main()
    assert capsys.readouterr().out.strip().splitlines()[-1].split(" | ")[1] == "1"
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"model={tmp_path / 'none'}"])
    with pytest.raises(SystemExit, match="no finished fold"):
        _script().main()


def test_folds_are_read_in_number_order(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    for fold in (10, 2):
        _fold(run, fold, n=1, sad=0.5, dice=0.8)
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"model={run}"])
    _script().main()
    assert capsys.readouterr().out.strip().splitlines()[-1].split(" | ")[1] == "2,10"


def test_seeds_get_a_mean_and_spread_row_and_their_folds_a_table(tmp_path, monkeypatch, capsys):
    for seed, sad in ((0, 0.4), (1, 0.6)):
        _fold(tmp_path / f"s{seed}", 0, n=2, sad=sad, dice=0.8 + seed / 10)
        _fold(tmp_path / f"s{seed}", 1, n=2, sad=sad, dice=0.8 + seed / 10)
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"s0={tmp_path / 's0'}", f"s1={tmp_path / 's1'}",
                                      "--mean", "two seeds", "--per-fold"])
    _script().main()
    tables = capsys.readouterr().out.strip().split("\n\n")
    mean = tables[0].splitlines()[-1].split(" | ")
    assert mean[0] == "| **two seeds**" and mean[1] == "2 runs"
    assert mean[2] == "0.5000 ± 0.1000"  # Table IV SAD over the runs
    assert mean[7] == "0.8500 ± 0.0500"  # Table V Dice: the runs' fold means 0.8 and 0.9
    folds = tables[1].splitlines()[2:]
    assert len(folds) == 4 and folds[3].split(" | ")[:4] == ["| s1", "1", "2", "0.6000"]


def test_an_evaluate_output_is_read_from_its_summary(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _fold(run, 0, n=1, sad=0.4, dice=0.8)
    _fold(run, 1, n=3, sad=0.8, dice=0.9)
    records = [json.loads((run / f"fold-{fold}" / "metrics.json").read_text()) for fold in (0, 1)]
    evaluated = tmp_path / "ensemble"  # what `medmat evaluate --run A --run B -o ensemble` writes
    evaluated.mkdir()
    (evaluated / "summary.json").write_text(json.dumps({"per_fold": records, "folds": [0, 1]}))
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"run={run}", f"ensemble={evaluated}"])
    _script().main()
    run_row, ensemble_row = capsys.readouterr().out.strip().splitlines()[-2:]
    assert ensemble_row.split(" | ")[1:] == run_row.split(" | ")[1:]
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"empty={tmp_path}"])
    with pytest.raises(SystemExit, match="no summary.json"):
        _script().main()


def test_members_of_an_ensemble_run_get_a_row_each_as_single_runs(tmp_path, monkeypatch, capsys):
    """An ensemble crossval folder (fold-*/member-*/, each member its own run with its seed): with
    --members each member across the folds is a row of its own, after the ensemble's; --mean stays
    over the runs named on the command line."""
    run = tmp_path / "ens"
    for fold in (0, 1):
        _fold(run, fold, n=2, sad=0.4, dice=0.9)
        for member, sad in ((0, 0.5), (1, 0.7)):
            _fold(run, fold, n=2, sad=sad, dice=0.8, folder=f"fold-{fold}/member-{member}")
            (run / f"fold-{fold}" / f"member-{member}" / "config.yaml").write_text(f"seed: {6 + member}\n")
    _fold(tmp_path / "single", 0, n=2, sad=0.6, dice=0.8)
    _fold(tmp_path / "single", 1, n=2, sad=0.6, dice=0.8)
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"ens={run}", f"single={tmp_path / 'single'}", "--members",
                                      "--mean", "runs"])
    _script().main()
    rows = [line.split(" | ") for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert [row[0] for row in rows] == ["| ens", "| ens, member 0 (seed 6)", "| ens, member 1 (seed 7)", "| single",
                                        "| **runs**"]
    assert [float(row[2]) for row in rows[:4]] == pytest.approx([0.4, 0.5, 0.7, 0.6])
    assert rows[4][1] == "2 runs" and rows[4][2] == "0.5000 ± 0.1000"
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", f"ens={run}"])  # without --members: the ensemble alone
    _script().main()
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_named_runs_split_at_the_last_equals_sign_and_name_a_bare_folder_by_itself():
    named_runs = load_benchmark("options").named_runs
    assert named_runs(["a=runs/x", "lr=1e-3=runs/y", "runs/z"]) == [
        ("a", "runs/x"), ("lr=1e-3", "runs/y"), ("runs/z", "runs/z")]
    with pytest.raises(ValueError, match="'empty='"):
        named_runs(["empty="])
    # Keyed by name, the second of two runs named alike would hide the first.
    with pytest.raises(ValueError, match="'s0' is given twice"):
        named_runs(["s0=runs/a", "s0=runs/b"])
    with pytest.raises(ValueError, match="'runs/a' is given twice"):
        named_runs(["runs/a", "runs/a"])


def test_a_run_without_folder_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", "model="])
    with pytest.raises(SystemExit, match="NAME=RUN_DIR"):
        _script().main()
    # epoch_selection.py reads its runs the same way, and says the same.
    monkeypatch.setattr(sys, "argv", ["epoch_selection.py", "s0=runs/a", "s0=runs/b"])
    with pytest.raises(SystemExit, match="^error: run name 's0' is given twice[^\n]*$"):
        load_benchmark("epoch_selection").main()
