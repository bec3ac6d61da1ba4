"""benchmarks/epoch_selection.py: last validation against the held-out fold's best epoch."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from tiny_configs import load_benchmark

COLUMNS = ["epoch", "loss", "val_SAD", "val_MSE", "val_Grad", "val_Conn", "val_GED", "val_Dice"]


def _fold(run: Path, fold: int, rows: list[dict], n_cases: int | None = None) -> None:
    folder = run / f"fold-{fold}"
    folder.mkdir(parents=True)
    with (folder / "log.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in COLUMNS})
    if n_cases is not None:
        (folder / "metrics.json").write_text(json.dumps({"test_ids": [str(i) for i in range(n_cases)]}))


def _val(epoch, sad, dice, ged=0.3):
    return {"epoch": epoch, "loss": 1.0, "val_SAD": sad, "val_MSE": sad / 10, "val_Grad": 1.0,
            "val_Conn": sad, "val_GED": ged, "val_Dice": dice}


def test_last_best_per_metric_and_epoch_of_best_sad_weighted_by_cases(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    # Fold 0: SAD is best at epoch 2, Dice at epoch 3 (the last); rows without val_* are skipped.
    _fold(run, 0, [{"epoch": 1, "loss": 2.0}, _val(2, 0.4, 0.80), _val(3, 0.6, 0.90)], n_cases=1)
    _fold(run, 1, [_val(2, 0.5, 0.70, ged=0.2), _val(3, 0.5, 0.70, ged=0.4)], n_cases=3)
    monkeypatch.setattr(sys, "argv", ["epoch_selection.py", f"m={run}"])
    load_benchmark("epoch_selection").main()
    rows = [line.split(" | ") for line in capsys.readouterr().out.strip().splitlines()[2:]]
    readings = {row[1]: row for row in rows}
    assert set(readings) == {"last", "best epoch per metric", "epoch of the best SAD"}
    sad, ged, dice = 3, 7, 8  # columns: run, reading, folds, SAD, MSE, Grad, Conn, GED, Dice
    assert float(readings["last"][sad]) == pytest.approx((0.6 + 3 * 0.5) / 4)
    assert float(readings["last"][ged]) == pytest.approx((0.3 + 3 * 0.4) / 4)
    assert float(readings["best epoch per metric"][sad]) == pytest.approx((0.4 + 3 * 0.5) / 4)
    assert float(readings["best epoch per metric"][dice].rstrip(" |")) == pytest.approx((0.9 + 3 * 0.7) / 4)
    assert float(readings["best epoch per metric"][ged]) == pytest.approx((0.3 + 3 * 0.2) / 4)
    # One epoch per fold: fold 0's Dice is read at its best-SAD epoch (0.80), not at its best Dice.
    assert float(readings["epoch of the best SAD"][dice].rstrip(" |")) == pytest.approx((0.8 + 3 * 0.7) / 4)


def test_a_run_without_validations_is_refused(tmp_path, monkeypatch):
    _fold(tmp_path / "run", 0, [{"epoch": 1, "loss": 2.0}])
    monkeypatch.setattr(sys, "argv", ["epoch_selection.py", f"m={tmp_path / 'run'}"])
    with pytest.raises(SystemExit, match="no validated epoch"):
        load_benchmark("epoch_selection").main()
    monkeypatch.setattr(sys, "argv", ["epoch_selection.py", f"m={tmp_path / 'none'}"])
    with pytest.raises(SystemExit, match="no fold"):
        load_benchmark("epoch_selection").main()
